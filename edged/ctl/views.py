"""The live loop of ``edgectl watch``: follow a device's status and telemetry and redraw.

On a terminal the screen is redrawn in place at every message and once a second between
them, so "last seen" keeps counting when a device goes quiet; piped, one screen is printed per
telemetry message, separated by a blank line.
"""

from __future__ import annotations

import json
import queue
import shutil
import sys
import time
from typing import IO, Any, Mapping, Optional

from edged.ctl.render import color_wanted, watch_screen
from edged.ctl.session import Received, Session

__all__ = ["payload_doc", "terminal_width", "watch"]

_REDRAW_S = 1.0


def payload_doc(payload: bytes) -> Any:
    """A JSON payload as its value; anything else (a bare ``offline``) as stripped text."""
    text = payload.decode("utf-8", "replace").strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def terminal_width() -> int:
    """The terminal's columns (COLUMNS wins, as for every tool); 100 when not a terminal."""
    return shutil.get_terminal_size((100, 24)).columns


def _status(payload: bytes) -> Mapping[str, Any]:
    doc = payload_doc(payload)
    return doc if isinstance(doc, dict) else {"state": str(doc) or "unknown"}


def watch(session: Session, device: str, count: int = 0, wide: bool = False, stream: Optional[IO[str]] = None) -> int:
    """Follow ``device`` until interrupted, or until ``count`` telemetry messages (0: never)."""
    out = stream or sys.stdout
    live = out.isatty()
    color = color_wanted(out)
    session.subscribe(f"edged/{device}/status")
    session.subscribe(f"edged/{device}/telemetry", qos=0)
    status: Optional[Mapping[str, Any]] = None
    telemetry: Optional[Mapping[str, Any]] = None
    seen_at: Optional[float] = None
    shown, drawn_at = 0, 0.0
    while count == 0 or shown < count:
        try:
            msg: Optional[Received] = session.messages.get(timeout=_REDRAW_S)
        except queue.Empty:
            msg = None
        now = time.monotonic()
        fresh = False
        if msg is not None and msg.topic.endswith("/status"):
            status, fresh = _status(msg.payload), live
        elif msg is not None:
            doc = payload_doc(msg.payload)
            if isinstance(doc, dict):
                telemetry, seen_at, fresh = doc, now, True
                shown += 1
        if not fresh and not (live and now - drawn_at >= _REDRAW_S):
            continue
        seen_s = now - seen_at if seen_at is not None else None
        lines = watch_screen(device, status, telemetry, seen_s, terminal_width(), wide, color)
        if live:
            # Home, each line then clear to its end, then clear below: no flicker, no leftovers.
            out.write("\x1b[H" + "".join(line + "\x1b[K\n" for line in lines) + "\x1b[J")
        else:
            out.write("\n".join(lines) + "\n\n")
        out.flush()
        drawn_at = now
    return 0
