"""Commands (``edged/<id>/cmd/<verb>``): their shape, and on a device that requires
signatures, who sent them, for which device and when.

A command is a JSON object (an empty payload is ``{}``)::

    {"id": "...", "verb": "rebuild-plans", "target": "node-1", "ts": 1718000000.25,
     "models": ["a", "b"], "signature": "..."}

``models`` is for ``rebuild-plans`` only. With ``control.public_keys`` configured a
command must be signed (the signature covers everything but itself, canonical.py) and
carry ``verb`` (equal to the topic's), ``target`` (this device's id or one of its groups)
and ``ts`` (the sender's clock, seconds since the epoch) within ``control.command_window_s``
of the device's clock and later than the last accepted signed command's: a captured command
is refused on any other topic, any other device, and a second time. The last accepted
``ts`` is kept under ``control.state_dir`` so a restart does not reopen the window.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from edged.atomic_file import write_atomic
from edged.control.canonical import SignatureError, verify_signature
from edged.control.payload import PushRejected, decode_json
from edged.control.settings import ControlSettings
from edged.errors import EdgedError

__all__ = ["COMMANDS", "Command", "CommandRejected", "CommandClock", "parse_command"]

log = logging.getLogger(__name__)

COMMANDS = ("reload", "rebuild-plans", "snapshot")
_KEYS = ("id", "verb", "target", "ts", "models", "signature")
CLOCK_NAME = "command-clock.json"


class CommandRejected(EdgedError):
    """A command failed its checks; ``reason`` names the counter it is accounted under."""

    def __init__(self, problems: Sequence[str], reason: str, request_id: Optional[str] = None) -> None:
        self.problems = list(problems)
        self.reason = reason
        self.request_id = request_id
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Command:
    verb: str
    request_id: Optional[str]
    models: Optional[Tuple[str, ...]]  # rebuild-plans: None = every model
    ts: Optional[float]  # set on signed commands; accepted with CommandClock.accept


class CommandClock:
    """The ``ts`` of the last accepted signed command, persisted atomically."""

    def __init__(self, state_dir: str) -> None:
        self.path = Path(state_dir) / CLOCK_NAME
        self._lock = threading.Lock()
        self._last: Optional[float] = None

    def last(self) -> float:
        with self._lock:
            if self._last is None:
                self._last = self._read()
            return self._last

    def _read(self) -> float:
        try:
            value = json.loads(self.path.read_text(encoding="utf-8")).get("last_ts")
        except FileNotFoundError:
            return 0.0
        except (OSError, ValueError, AttributeError) as exc:
            # Unreadable: nothing older than the window can pass anyway; log and go on.
            log.error("%s: ignoring the command clock: %s", self.path, exc)
            return 0.0
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0

    def accept(self, ts: float) -> None:
        """Record ``ts`` before the command runs; raises OSError when it cannot be kept."""
        with self._lock:
            write_atomic(self.path, json.dumps({"last_ts": ts}).encode())
            self._last = ts


def _request(raw: bytes, max_bytes: int) -> Dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        doc = decode_json(raw, max_bytes)
    except PushRejected as exc:
        raise CommandRejected(exc.problems, "invalid_json", exc.request_id) from None
    if not isinstance(doc, dict):
        raise CommandRejected(["payload: expected a JSON object"], "invalid_command")
    return doc


def _models(doc: Dict[str, Any], verb: str) -> Tuple[Optional[Tuple[str, ...]], Optional[str]]:
    if "models" not in doc:
        return None, None
    if verb != "rebuild-plans":
        return None, f"models: only rebuild-plans takes models, not {verb}"
    models = doc["models"]
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        return None, "models: expected a list of model names (strings)"
    return tuple(models), None


def parse_command(
    verb: str,
    raw: bytes,
    settings: ControlSettings,
    public_keys: Sequence[Any],
    targets: Sequence[str],
    now: float,
    last_ts: float,
) -> Command:
    """Check one command; raises CommandRejected naming every problem. ``last_ts``: the
    clock's last accepted ``ts`` (only signed commands are held to it)."""
    if verb not in COMMANDS:
        raise CommandRejected([f"cmd/{verb}: unknown command (known: {', '.join(COMMANDS)})"], "unknown_command")
    doc = _request(raw, settings.max_payload_bytes)
    request_id = doc.get("id") if isinstance(doc.get("id"), str) else None
    problems = [f"{key}: unknown key (expected {', '.join(_KEYS)})" for key in doc if key not in _KEYS]
    if "id" in doc and request_id is None:
        problems.append("id: expected a string")
    models, problem = _models(doc, verb)
    if problem:
        problems.append(problem)
    if doc.get("verb", verb) != verb:
        problems.append(f"verb: {doc['verb']!r} does not match the topic's cmd/{verb}")
    if "target" in doc and doc["target"] not in targets:
        problems.append(f"target: {doc['target']!r} is not this device or one of its groups")
    if problems:
        raise CommandRejected(problems, "invalid_command", request_id)
    if not public_keys:
        return Command(verb, request_id, models, None)
    try:
        verify_signature(doc, public_keys)
    except SignatureError as exc:
        raise CommandRejected([str(exc)], "bad_signature", request_id) from None
    missing = [key for key in ("verb", "target", "ts") if key not in doc]
    if missing:
        raise CommandRejected(
            [f"{key}: required in a signed command" for key in missing], "invalid_command", request_id
        )
    ts = doc["ts"]
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise CommandRejected(["ts: expected seconds since the epoch (a number)"], "invalid_command", request_id)
    window = settings.command_window_s
    if abs(now - ts) > window:
        raise CommandRejected(
            [f"ts: {ts:.3f} is {now - ts:+.1f} s from this device's clock (allowed: +/-{window:g} s)"],
            "stale_command",
            request_id,
        )
    if ts <= last_ts:
        raise CommandRejected(
            [f"ts: {ts:.3f} is not later than the last accepted command's ({last_ts:.3f}): replayed"],
            "replayed_command",
            request_id,
        )
    return Command(verb, request_id, models, float(ts))
