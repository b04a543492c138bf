"""Errors that repeat per frame, logged without flooding the journal."""

from __future__ import annotations

import logging
import threading
import time
from typing import Dict, Tuple

__all__ = ["RepeatedErrors"]


class RepeatedErrors:
    """The first error of a kind is logged at once; later ones of that kind at most once per
    ``interval_s``, with how many there were. A full disk under a 30 fps sink would otherwise
    log 30 lines a second (the drops are counted per reason either way)."""

    def __init__(self, logger: logging.Logger, model: str, interval_s: float = 10.0) -> None:
        self._log = logger
        self._model = model
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._state: Dict[str, Tuple[float, int]] = {}  # kind -> (last logged, suppressed since)

    def error(self, kind: str, detail: object) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._state.get(kind, (-self._interval_s, 0))
            if now - last < self._interval_s:
                self._state[kind] = (last, suppressed + 1)
                return
            self._state[kind] = (now, 0)
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        self._log.error("model %s: %s failed: %s%s", self._model, kind, detail, more)
