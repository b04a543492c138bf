"""Frame-rate pacing on deadlines, so a slow iteration does not shift every later frame."""

from __future__ import annotations

import threading
import time

__all__ = ["Pacer"]


class Pacer:
    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._next = time.monotonic()

    def wait(self, stop: threading.Event) -> bool:
        """Wait for the next frame slot; False when ``stop`` was set meanwhile."""
        if self.period <= 0:
            return not stop.is_set()
        now = time.monotonic()
        delay = self._next - now
        if delay > 0 and stop.wait(delay):
            return False
        # After a long stall, restart the schedule instead of bursting to catch up.
        self._next = max(self._next + self.period, time.monotonic() - self.period)
        return not stop.is_set()
