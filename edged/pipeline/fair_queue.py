"""Frames of several sources waiting for one engine, taken in batches fairly.

Fairness policy (round-robin, one frame per source per turn):

* Every source has its own lane, bounded by its ``queue_size``. A live source whose lane is
  full drops its own oldest frame; a file or folder waits for room. A source's backlog never
  takes room from another source's lane.
* A batch is filled by visiting the lanes in turn, one frame (the oldest) from each lane that
  has one, round after round, until the batch is full or the lanes are empty. The next batch
  starts at the lane after the last one served, so no lane is always first.

So every source gets an equal share of the engine (max-min fair): a source that sends no more
than ``engine throughput / sources with frames`` per second is served at its full rate and
loses nothing to a saturated engine, however fast the others push; only sources above their
share drop, and only their own frames. A 5 fps camera next to a 200 fps one into an engine
that does 50 fps keeps all its 5 frames a second; the fast one gets the remaining 45.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, Dict, List

from edged.pipeline.frame import Frame

__all__ = ["FairQueue"]

_POLL_S = 0.05


class _Lane:
    __slots__ = ("bound", "closed", "frames", "live")

    def __init__(self, bound: int, live: bool) -> None:
        self.bound = bound
        self.live = live
        self.closed = False
        self.frames: Deque[Frame] = deque()


class FairQueue:
    """Bounded per-source lanes; :meth:`take` assembles batches round-robin. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lanes: Dict[str, _Lane] = {}  # in the order sources were added
        self._cursor = 0  # index into the lane order where the next batch starts

    # -- lanes -------------------------------------------------------------------------------

    def set_lane(self, lane_id: str, bound: int, live: bool) -> None:
        """Add a lane, or change the bound and drop policy of one (a source changed in place)."""
        with self._cond:
            lane = self._lanes.get(lane_id)
            if lane is None:
                self._lanes[lane_id] = _Lane(bound, live)
            else:
                lane.bound, lane.live, lane.closed = bound, live, False
            self._cond.notify_all()

    def close_lane(self, lane_id: str) -> None:
        """Accept no more frames on the lane; it goes once its queued frames are taken."""
        with self._cond:
            lane = self._lanes.get(lane_id)
            if lane is not None:
                lane.closed = True
                if not lane.frames:
                    self._remove(lane_id)
            self._cond.notify_all()

    def _remove(self, lane_id: str) -> None:
        order = list(self._lanes)
        index = order.index(lane_id)
        del self._lanes[lane_id]
        if index < self._cursor:
            self._cursor -= 1
        if self._cursor >= len(self._lanes):
            self._cursor = 0

    def depth(self, lane_id: str) -> int:
        with self._cond:
            lane = self._lanes.get(lane_id)
            return len(lane.frames) if lane is not None else 0

    def empty(self) -> bool:
        with self._cond:
            return not any(lane.frames for lane in self._lanes.values())

    # -- producers ---------------------------------------------------------------------------

    def put(self, lane_id: str, frame: Frame, abort: threading.Event) -> List[Frame]:
        """Queue ``frame``; returns the frames that did not stay: a live lane's oldest when it
        was full, or ``frame`` itself when ``abort`` was set while waiting for room or the
        lane is closed."""
        with self._cond:
            lane = self._lanes.get(lane_id)
            if lane is None or lane.closed:
                return [frame]
            dropped: List[Frame] = []
            if lane.live:
                while len(lane.frames) >= lane.bound:
                    dropped.append(lane.frames.popleft())
            else:
                while len(lane.frames) >= lane.bound:
                    if abort.is_set() or lane.closed:
                        return [frame]
                    self._cond.wait(_POLL_S)
            lane.frames.append(frame)
            self._cond.notify_all()
            return dropped

    # -- the consumer ------------------------------------------------------------------------

    def take(self, max_frames: int, max_wait_s: float, first_wait_s: float = _POLL_S) -> List[Frame]:
        """Up to ``max_frames`` frames, round-robin over the lanes. Waits up to
        ``first_wait_s`` for a first frame (none: an empty list), then up to ``max_wait_s``
        more for a full batch."""
        with self._cond:
            frames = self._round_robin(max_frames)
            if not frames:
                self._cond.wait(first_wait_s)
                frames = self._round_robin(max_frames)
                if not frames:
                    return frames
            deadline = time.monotonic() + max_wait_s
            while len(frames) < max_frames:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                frames += self._round_robin(max_frames - len(frames))
            self._cond.notify_all()  # room for producers waiting on a full lane
            return frames

    def _round_robin(self, wanted: int) -> List[Frame]:
        taken: List[Frame] = []
        lanes = list(self._lanes.values())
        while len(taken) < wanted and any(lane.frames for lane in lanes):
            for step in range(len(lanes)):
                index = (self._cursor + step) % len(lanes)
                if lanes[index].frames:
                    taken.append(lanes[index].frames.popleft())
                    if len(taken) == wanted:
                        # The next batch starts after the last lane served; after whole
                        # rounds that emptied every lane, where this one started.
                        self._cursor = (index + 1) % len(lanes)
                        break
        for lane_id, lane in list(self._lanes.items()):
            if lane.closed and not lane.frames:
                self._remove(lane_id)
        return taken
