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
from typing import Dict, Optional

__all__ = ["Notifier", "log_fields", "setup_logging", "watchdog_interval_s"]

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
