"""systemd integration: the sd_notify protocol and journald logging.

The notify protocol is spoken over a plain AF_UNIX datagram socket so it works whether or
not systemd-python is installed; journald logging uses systemd-python's JournalHandler
when present and falls back to stderr.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from edged.status import status_summary

__all__ = ["Notifier", "ServiceHooks", "log_fields", "setup_logging", "watchdog_interval_s"]

log = logging.getLogger(__name__)


def watchdog_interval_s(environ: Optional[Dict[str, str]] = None) -> Optional[float]:
    """The watchdog interval systemd asked for (WatchdogSec=), or None when there is none.

    WATCHDOG_PID, when set, names the process meant; any other process ignores the watchdog.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number; watchdog disabled", usec)
        return None
    return value / 1e6 if value > 0 else None


class Notifier:
    """Sends sd_notify messages; does nothing when not started by systemd (no NOTIFY_SOCKET)."""

    def __init__(self, address: Optional[str] = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        self._address: Optional[str] = None
        self._sock: Optional[socket.socket] = None
        if not address:
            return
        if address.startswith("@"):
            # Abstract namespace: a leading NUL byte instead of '@'.
            address = "\0" + address[1:]
        elif not address.startswith("/"):
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract name; not notifying", address)
            return
        self._address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: object) -> bool:
        """Send KEY=value lines (``notify(READY=1, STATUS="...")``); False when not delivered."""
        if self._sock is None or self._address is None:
            return False
        message = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
        try:
            self._sock.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", self._address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify(READY=1, STATUS=status) if status else self.notify(READY=1)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def reloading(self) -> bool:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 for Type=notify-reload; older
        # versions ignore the extra field.
        return self.notify(RELOADING=1, MONOTONIC_USEC=_monotonic_usec())

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(value: object) -> str:
    return str(value).replace("\n", " ")


def _monotonic_usec() -> int:
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)


def log_fields(
    model: Optional[str] = None, device: Optional[str] = None, plan_key: Optional[str] = None
) -> Dict[str, Dict[str, str]]:
    """``extra=`` for a log call: journald structured fields MODEL=, DEVICE=, PLAN_KEY=."""
    fields: Dict[str, str] = {}
    if model:
        fields["MODEL"] = model
    if device:
        fields["DEVICE"] = device
    if plan_key:
        fields["PLAN_KEY"] = plan_key
    return {"journal_fields": fields}


class _FieldsFilter(logging.Filter):
    """Copies ``record.journal_fields`` into the upper-case attributes JournalHandler sends."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in getattr(record, "journal_fields", {}).items():
            setattr(record, key, value)
        return True


def setup_logging(level: int = logging.INFO, journal: Optional[bool] = None) -> str:
    """Route the root logger to journald (when under systemd with systemd-python) or stderr.

    ``journal`` None means: journald when stderr is connected to it (JOURNAL_STREAM, set by
    systemd for services). Returns "journal" or "stderr".
    """
    root = logging.getLogger()
    root.setLevel(level)
    if journal is None:
        journal = bool(os.environ.get("JOURNAL_STREAM"))
    handler: Optional[logging.Handler] = None
    target = "stderr"
    if journal:
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found]
        except ImportError:
            handler = None
        else:
            handler = JournalHandler(SYSLOG_IDENTIFIER="edged")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            target = "journal"
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        # journald timestamps lines itself; a plain terminal gets our own.
        fmt = "%(levelname)s %(name)s: %(message)s" if journal else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(_FieldsFilter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    return target


class ServiceHooks:
    """What the daemon tells systemd: readiness, status, liveness, reloads and stopping.

    ``daemon`` is an edged.daemon.Daemon; its ``slots`` are read.
    """

    def __init__(
        self, daemon: Any, notifier: Optional[Notifier] = None, environ: Optional[Dict[str, str]] = None
    ) -> None:
        self.daemon = daemon
        self.notifier = notifier or Notifier()
        self.watchdog_s = watchdog_interval_s(environ)
        self._next_ping = 0.0
        self._last_status = ""
        self.pings = 0
        self._frames_seen: Dict[str, Tuple[int, float]] = {}
        self.withheld_reason = ""

    def stale_pipelines(self, now: Optional[float] = None) -> List[str]:
        """Models whose running pipeline made no progress within the watchdog interval.

        Progress is the pipeline's own ``last_progress`` (its workers' heartbeat) and, for a
        source still running, a new frame: an idle inference worker keeps beating while a
        hung camera delivers nothing, and that hang must stop the pings too.
        """
        if self.watchdog_s is None:
            return []
        now = time.monotonic() if now is None else now
        stale = []
        for name, slot in self.daemon.slots.items():
            pipeline = slot.pipeline
            if pipeline is None or pipeline.state != "running" or pipeline.finished:
                self._frames_seen.pop(name, None)
                continue
            frames_in = int(pipeline.stats.counters()["frames_in"])
            seen = self._frames_seen.get(name)
            if seen is None or seen[0] != frames_in:
                self._frames_seen[name] = seen = (frames_in, now)
            source_stalled = not pipeline._source_done.is_set() and now - seen[1] > self.watchdog_s
            if source_stalled or now - pipeline.last_progress > self.watchdog_s:
                stale.append(name)
        return stale

    def ready(self) -> None:
        self._last_status = status_summary(self.daemon)
        self.notifier.ready(self._last_status)

    def tick(self, now: Optional[float] = None) -> None:
        """Called from the main loop: STATUS= on change, WATCHDOG=1 at half the interval."""
        if not self.notifier.enabled:
            return
        now = time.monotonic() if now is None else now
        summary = status_summary(self.daemon)
        if summary != self._last_status:
            self._last_status = summary
            self.notifier.status(summary)
        if self.watchdog_s is None or now < self._next_ping:
            return
        self._next_ping = now + self.watchdog_s / 2
        stale = self.stale_pipelines(now)
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
