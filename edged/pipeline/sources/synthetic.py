"""Generated frames at a fixed rate, for demos, soak tests and benchmarks."""

from __future__ import annotations

import threading
import time
from typing import Optional, Tuple

import numpy as np

from edged.config.model import PluginConfig
from edged.pipeline.frame import Frame
from edged.pipeline.sources.base import Source
from edged.pipeline.sources.pacing import Pacer

__all__ = ["SyntheticSource"]

# A small ring of pre-generated frames keeps generation off the hot path.
_RING = 8


class SyntheticSource(Source):
    def __init__(self, config: PluginConfig, frame_hw: Tuple[int, int]) -> None:
        size = config.get("size")
        super().__init__(config, (int(size[0]), int(size[1])) if size else frame_hw)
        self.fps = float(config.get("fps", 30))
        self.count = int(config.get("count", 0))
        # Diagnostic hook for the watchdog: a source that stops delivering without failing.
        self.stall_after = int(config.get("stall_after", 0))
        self.live = self.fps > 0
        rng = np.random.default_rng(int(config.get("seed", 0)))
        h, w = self.frame_hw
        # _RING different frames in the memory of one: each is the tall buffer from its own
        # row on (a contiguous view). Eight separate 640x360 frames cost 5.5 MB per source.
        tall = rng.integers(0, 256, size=(h + _RING - 1, w, 3), dtype=np.uint8)
        tall.setflags(write=False)
        self._frames = [tall[i : i + h] for i in range(_RING)]
        self._pacer = Pacer(self.fps)

    def read(self, stop: threading.Event) -> Optional[Frame]:
        if self.count and self._seq >= self.count:
            return None
        if self.stall_after and self._seq >= self.stall_after:
            stop.wait()
            return None
        if not self._pacer.wait(stop):
            return None
        seq = self._next_seq()
        return Frame(seq, self._frames[seq % _RING], time.monotonic(), origin="synthetic")
