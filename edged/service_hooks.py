"""What the daemon tells systemd: readiness, status, liveness, reloads and stopping.

It reads running-state snapshots (edged/model_state.py) and speaks through the sd_notify
protocol of edged/systemd.py; it never touches a pipeline.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional

from edged.model_state import RunningState
from edged.status import status_summary
from edged.systemd import Notifier, watchdog_interval_s

__all__ = ["ServiceHooks"]


class ServiceHooks:
    """``snapshot`` returns the running state (latencies are not needed).

    Liveness: WATCHDOG=1 goes out from the daemon's main loop, which also finds stuck
    models and queues their in-process restart (Daemon._supervise). So a ping proves the
    loop that keeps every model recoverable is alive; a model that is stuck, a camera that
    is down and a plan that builds for minutes are states reported in STATUS= and
    telemetry, never a reason for systemd to kill every model. Only a stuck main loop
    misses the pings.
    """

    def __init__(
        self,
        snapshot: Callable[[], RunningState],
        notifier: Optional[Notifier] = None,
        environ: Optional[Dict[str, str]] = None,
    ) -> None:
        self._snapshot = snapshot
        self.notifier = notifier or Notifier()
        self.watchdog_s = watchdog_interval_s(environ)
        self._next_ping = 0.0
        self._last_status = ""
        self.pings = 0

    def ready(self) -> None:
        self._last_status = status_summary(self._snapshot())
        self.notifier.ready(self._last_status)

    def tick(self, now: Optional[float] = None) -> None:
        """Called from the main loop: STATUS= on change, WATCHDOG=1 at half the interval."""
        if not self.notifier.enabled:
            return
        now = time.monotonic() if now is None else now
        summary = status_summary(self._snapshot())
        if summary != self._last_status:
            self._last_status = summary
            self.notifier.status(summary)
        if self.watchdog_s is None or now < self._next_ping:
            return
        self._next_ping = now + self.watchdog_s / 2
        self.notifier.watchdog()
        self.pings += 1
