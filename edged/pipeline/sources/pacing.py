"""Frame-rate pacing on deadlines, so a slow iteration does not shift every later frame, and
the rate limit of a live source that cannot be asked to send fewer frames."""

from __future__ import annotations

import threading
import time

__all__ = ["Pacer", "RateLimit"]


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


class RateLimit:
    """Admits at most ``fps`` frames a second from a live source (an RTSP camera sends at its
    own rate): a frame is let through when its slot has come, within an eighth of a period of
    arrival jitter, and the others are dropped. ``fps`` 0: every frame."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._next = 0.0

    def admit(self, now: float) -> bool:
        if self.period <= 0:
            return True
        if now + self.period / 8 < self._next:
            return False
        # Slots follow the schedule, not the arrivals, so a 30 fps stream limited to 10 keeps
        # exactly every third frame; after a gap the schedule restarts at the arrival.
        self._next = max(self._next + self.period, now)
        return True
