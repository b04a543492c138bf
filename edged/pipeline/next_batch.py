"""The next batch, taken and copied while the engine runs the current one.

A batch's frames are copied into one batch tensor before the engine call. The frames were
written by their sources' threads on other cores, so the infer thread reads them cold:
8 frames of 224x224 took 0.4-0.8 ms to copy, against 0.05-0.2 ms for the same copy
repeated (tools/bench_engine_calls.py --batch 8), 5-7 % of a batch-8 engine call on a
16-core host, in which the engine sat idle.

While the engine runs a batch (the GIL released), this helper takes the next batch if a
whole one is queued already and copies it into the spare batch tensor. Only a whole
batch is taken early, so batches stay as full as when the infer thread takes them after
the call; when fewer frames are queued the infer thread takes them after the call, as
before. What changes is when a full batch is formed: frames that arrive during the call
go into the batch after the early one (at most one batch later), and round-robin across
sources applies as always (edged/pipeline/fair_queue.py).
"""

from __future__ import annotations

import threading
from typing import Callable, List, Optional, Tuple

import numpy as np

from edged.pipeline.fair_queue import FairQueue
from edged.pipeline.frame import Frame

__all__ = ["NextBatch", "Prepared"]

_POLL_S = 0.05
Prepared = Tuple[List[Frame], np.ndarray]  # frames, their batch tensor


class NextBatch:
    """One infer thread's helper. The infer thread calls :meth:`engine_starting` just before
    an engine call and :meth:`collect` just after it. A request the helper has not begun
    when the engine returns is withdrawn, so the infer thread never waits for the helper to
    be scheduled; it waits only for a copy already under way."""

    def __init__(
        self,
        lanes: FairQueue,
        batch: int,
        assemble: Callable[[List[Frame], int], Prepared],
        abort: threading.Event,
    ) -> None:
        self._lanes = lanes
        self._batch = batch
        self._assemble = assemble  # frames, buffer slot -> the batch copied into that slot
        self._abort = abort
        self._stop = threading.Event()
        self._state = threading.Condition()
        self._asked = False  # a request the helper has not begun
        self._working = False
        self._slot = 0
        self._prepared: Optional[Prepared] = None

    def run(self) -> None:
        """The helper thread's loop."""
        while not (self._abort.is_set() or self._stop.is_set()):
            with self._state:
                if not self._asked:
                    self._state.wait(_POLL_S)
                if not self._asked:
                    continue
                self._asked, self._working = False, True
                slot = self._slot
            prepared = None
            try:
                frames = self._lanes.take_full(self._batch)
                if frames:
                    prepared = self._assemble(frames, slot)
            finally:
                with self._state:
                    self._prepared, self._working = prepared, False
                    self._state.notify_all()

    def engine_starting(self, spare_slot: int) -> None:
        """The engine is about to run from the other buffer; ``spare_slot`` is free."""
        with self._state:
            self._slot, self._asked = spare_slot, True
            self._state.notify_all()

    def collect(self) -> Optional[Prepared]:
        """The batch taken during the call, if any."""
        with self._state:
            self._asked = False
            while self._working:
                if self._abort.is_set():
                    return None
                self._state.wait(_POLL_S)
            prepared, self._prepared = self._prepared, None
            return prepared

    def stop(self) -> None:
        self._stop.set()
