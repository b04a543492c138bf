"""What the daemon tells systemd: readiness, status, liveness, reloads and stopping.

It reads running-state snapshots (edged/model_state.py) and speaks through the sd_notify
protocol of edged/systemd.py; it never touches a pipeline.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Optional, Tuple

from edged.model_state import RunningState
from edged.status import status_summary
from edged.systemd import Notifier, watchdog_interval_s

__all__ = ["ServiceHooks"]

log = logging.getLogger(__name__)


class ServiceHooks:
    """``snapshot`` returns the running state (latencies are not needed)."""

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
        self._frames_seen: Dict[str, Tuple[int, float]] = {}
        self.withheld_reason = ""

    def stale_pipelines(self, state: RunningState, now: Optional[float] = None) -> List[str]:
        """Models whose running pipeline made no progress within the watchdog interval.

        Progress is the pipeline's own ``last_progress`` (its workers' heartbeat) and, for a
        source still running, a new frame: an idle inference worker keeps beating while a
        hung camera delivers nothing, and that hang must stop the pings too.
        """
        if self.watchdog_s is None:
            return []
        now = time.monotonic() if now is None else now
        stale = []
        for name, model in state.models.items():
            counters = model.counters
            if counters is None or model.state != "running" or model.finished or model.last_progress is None:
                self._frames_seen.pop(name, None)
                continue
            seen = self._frames_seen.get(name)
            if seen is None or seen[0] != counters.frames_in:
                self._frames_seen[name] = seen = (counters.frames_in, now)
            source_stalled = not model.source_finished and now - seen[1] > self.watchdog_s
            if source_stalled or now - model.last_progress > self.watchdog_s:
                stale.append(name)
        return stale

    def ready(self) -> None:
        self._last_status = status_summary(self._snapshot())
        self.notifier.ready(self._last_status)

    def tick(self, now: Optional[float] = None) -> None:
        """Called from the main loop: STATUS= on change, WATCHDOG=1 at half the interval."""
        if not self.notifier.enabled:
            return
        now = time.monotonic() if now is None else now
        state = self._snapshot()
        summary = status_summary(state)
        if summary != self._last_status:
            self._last_status = summary
            self.notifier.status(summary)
        if self.watchdog_s is None or now < self._next_ping:
            return
        self._next_ping = now + self.watchdog_s / 2
        stale = self.stale_pipelines(state, now)
        if stale:
            # No ping: systemd's watchdog kills and restarts a daemon whose worker hangs.
            reason = "no progress from " + ", ".join(stale)
            if reason != self.withheld_reason:
                log.error("watchdog ping withheld: %s", reason)
            self.withheld_reason = reason
            return
        self.withheld_reason = ""
        self.notifier.watchdog()
        self.pings += 1
