"""Frames of several sources waiting for one engine, taken in batches fairly.

Fairness policy (round-robin, one frame per source per turn):

* Every source has its own lane, bounded by its ``queue_size``. A live source whose lane is
  full drops its own oldest frame; a file or folder waits for room. A source's backlog never
  takes room from another source's lane.
* A batch is filled by visiting the lanes in turn, one frame (the oldest) from each lane that
  has one, round after round, until the batch is full or the lanes are empty. The next batch
  starts at the lane after the last one served, so no lane is always first.
* While the engine runs a batch, the next one is taken at once if a whole batch is queued
  (edged/pipeline/next_batch.py), by the same rounds; frames that arrive during the call
  then go into the batch after it, at most one batch later than otherwise.

So every source gets an equal share of the engine (max-min fair): a source that sends no more
than ``engine throughput / sources with frames`` per second is served at its full rate and
loses nothing to a saturated engine, however fast the others push; only sources above their
share drop, and only their own frames. A 5 fps camera next to a 200 fps one into an engine
that does 50 fps keeps all its 5 frames a second; the fast one gets the remaining 45.

Wake-ups are kept to the ones that move work: a consumer waiting for frames is woken only
once enough are queued to end its wait (one for a first frame, the rest of its batch
after that), and a file's reader waiting for room only once its lane is down to half its
bound, so it refills the lane in one stretch. Waking a thread costs a futex call and a
pass of the GIL; waking one per frame cost more CPU than the frame's own handling.
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
    __slots__ = ("blocked", "bound", "closed", "frames", "live")

    def __init__(self, bound: int, live: bool) -> None:
        self.bound = bound
        self.live = live
        self.closed = False
        self.blocked = 0  # producers waiting for room
        self.frames: Deque[Frame] = deque()


class FairQueue:
    """Bounded per-source lanes; :meth:`take` assembles batches round-robin. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # consumers wait here for frames
        self._room = threading.Condition(self._lock)  # file producers wait here for room
        self._lanes: Dict[str, _Lane] = {}  # in the order sources were added
        self._cursor = 0  # index into the lane order where the next batch starts
        self._queued = 0  # frames in all lanes
        self._needs: List[int] = []  # frames each waiting consumer waits for
        self._blocked = 0  # producers waiting for room, in all lanes
        self._closed = 0  # closed lanes not yet removed

    # -- lanes -------------------------------------------------------------------------------

    def set_lane(self, lane_id: str, bound: int, live: bool) -> None:
        """Add a lane, or change the bound and drop policy of one (a source changed in place)."""
        with self._lock:
            lane = self._lanes.get(lane_id)
            if lane is None:
                self._lanes[lane_id] = _Lane(bound, live)
            else:
                self._closed -= lane.closed
                lane.bound, lane.live, lane.closed = bound, live, False
            self._room.notify_all()

    def close_lane(self, lane_id: str) -> None:
        """Accept no more frames on the lane; it goes once its queued frames are taken."""
        with self._lock:
            lane = self._lanes.get(lane_id)
            if lane is not None and not lane.closed:
                lane.closed = True
                self._closed += 1
                if not lane.frames:
                    self._remove(lane_id)
            self._room.notify_all()

    def _remove(self, lane_id: str) -> None:
        order = list(self._lanes)
        index = order.index(lane_id)
        self._closed -= self._lanes.pop(lane_id).closed
        if index < self._cursor:
            self._cursor -= 1
        if self._cursor >= len(self._lanes):
            self._cursor = 0

    def depth(self, lane_id: str) -> int:
        with self._lock:
            lane = self._lanes.get(lane_id)
            return len(lane.frames) if lane is not None else 0

    def empty(self) -> bool:
        with self._lock:
            return not self._queued

    # -- producers ---------------------------------------------------------------------------

    def put(self, lane_id: str, frame: Frame, abort: threading.Event) -> List[Frame]:
        """Queue ``frame``; returns the frames that did not stay: a live lane's oldest when it
        was full, or ``frame`` itself when ``abort`` was set while waiting for room or the
        lane is closed."""
        with self._lock:
            lane = self._lanes.get(lane_id)
            if lane is None or lane.closed:
                return [frame]
            dropped: List[Frame] = []
            if lane.live:
                while len(lane.frames) >= lane.bound:
                    dropped.append(lane.frames.popleft())
                    self._queued -= 1
            else:
                while len(lane.frames) >= lane.bound:
                    if abort.is_set() or lane.closed:
                        return [frame]
                    lane.blocked += 1
                    self._blocked += 1
                    self._room.wait(_POLL_S)
                    lane.blocked -= 1
                    self._blocked -= 1
            lane.frames.append(frame)
            self._queued += 1
            if self._needs and self._queued >= min(self._needs):
                self._ready.notify_all()
            return dropped

    # -- the consumer ------------------------------------------------------------------------

    def take(self, max_frames: int, max_wait_s: float, first_wait_s: float = _POLL_S) -> List[Frame]:
        """Up to ``max_frames`` frames, round-robin over the lanes. Waits up to
        ``first_wait_s`` for a first frame (none: an empty list), then up to ``max_wait_s``
        more for a full batch."""
        with self._lock:
            frames = self._round_robin(max_frames)
            if not frames:
                self._wait(1, first_wait_s)
                frames = self._round_robin(max_frames)
                if not frames:
                    return frames
            if len(frames) < max_frames and max_wait_s > 0:
                deadline = time.monotonic() + max_wait_s
                while len(frames) < max_frames:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wait(max_frames - len(frames), remaining)
                    frames += self._round_robin(max_frames - len(frames))
            if self._blocked:
                self._wake_producers()
            return frames

    def take_full(self, batch: int) -> List[Frame]:
        """A whole batch, round-robin as :meth:`take`, if ``batch`` frames are queued now;
        else nothing. Never waits."""
        with self._lock:
            if self._queued < batch:
                return []
            frames = self._round_robin(batch)
            if self._blocked:
                self._wake_producers()
            return frames

    def _wait(self, need: int, timeout: float) -> None:
        self._needs.append(need)
        try:
            self._ready.wait(timeout)
        finally:
            self._needs.remove(need)

    def _wake_producers(self) -> None:
        for lane in self._lanes.values():
            if lane.blocked and len(lane.frames) <= lane.bound // 2:
                self._room.notify_all()
                return

    def _round_robin(self, wanted: int) -> List[Frame]:
        taken: List[Frame] = []
        available = min(wanted, self._queued)
        if available:
            lanes = list(self._lanes.values())
            index = self._cursor
            while len(taken) < available:
                frames = lanes[index].frames
                if frames:
                    taken.append(frames.popleft())
                index = (index + 1) % len(lanes)
            self._queued -= available
            if available == wanted:
                # The next batch starts after the last lane served; after whole rounds
                # that emptied every lane, where this one started.
                self._cursor = index
        if self._closed:
            for lane_id, lane in list(self._lanes.items()):
                if lane.closed and not lane.frames:
                    self._remove(lane_id)
        return taken
