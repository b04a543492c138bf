"""What a control message must pass before it may wait in the control queue.

The control worker takes one message at a time and a valid push may build plans for
minutes, so the queue in front of it is bounded. Junk must never take a valid push's place
there: each message is first screened on the network side with the checks that need no
config work (size, JSON, envelope, signature, target, version not older than the one in
force; for commands shape, signature, freshness). A message that fails is answered at
once (``rejected`` or ``duplicate`` with its reason) and counted per reason; only the rest
are queued, and one that finds the queue full is answered ``dropped`` and counted too.
Nothing is dropped silently.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

from edged.control.commands import CommandRejected, parse_command
from edged.control.payload import DuplicatePush, PushRejected, screen_push
from edged.control.settings import ControlSettings

__all__ = ["Admission", "Context", "Refusal"]


@dataclass(frozen=True)
class Context:
    """What the checks compare against: the device's state when the message arrives."""

    prefix: str  # edged/<device id>
    version: int
    applied_digest: Optional[str]
    settings: ControlSettings
    public_keys: Sequence[Any]
    targets: Sequence[str]
    command_last_ts: float
    now: float


@dataclass(frozen=True)
class Refusal:
    reason: str
    reply: Dict[str, Any]
    default_topic: str


class Admission:
    """The screening of control messages, with per-reason counts of those not queued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: "Counter[str]" = Counter()

    def count(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def screen(self, topic: str, payload: bytes, ctx: Context) -> Optional[Refusal]:
        """A refusal to answer with (already counted), or None when the message may be queued."""
        refusal = self._check(topic, payload, ctx)
        if refusal is not None:
            self.count(refusal.reason)
        return refusal

    def _check(self, topic: str, payload: bytes, ctx: Context) -> Optional[Refusal]:
        if topic.endswith("/config/set"):
            result_topic = f"{ctx.prefix}/config/result"
            if not ctx.settings.accept_pushes:
                reply: Dict[str, Any] = {
                    "status": "rejected",
                    "errors": ["control.accept_pushes is false on this device"],
                }
                return Refusal("pushes_disabled", reply, result_topic)
            try:
                screen_push(payload, ctx.version, ctx.settings, ctx.public_keys, ctx.applied_digest, ctx.targets)
            except DuplicatePush as dup:
                duplicate: Dict[str, Any] = {"status": "duplicate", "id": dup.request_id, "version": dup.version}
                return Refusal("duplicate", dict(duplicate, errors=[]), result_topic)
            except PushRejected as exc:
                rejected: Dict[str, Any] = {"status": "rejected", "id": exc.request_id, "version": exc.version}
                return Refusal(exc.reason, dict(rejected, errors=exc.problems, reason=exc.reason), result_topic)
            return None
        if topic.startswith(f"{ctx.prefix}/cmd/"):
            verb = topic[len(ctx.prefix) + len("/cmd/") :]
            try:
                parse_command(verb, payload, ctx.settings, ctx.public_keys, ctx.targets, ctx.now, ctx.command_last_ts)
            except CommandRejected as exc:
                reply = {
                    "command": verb,
                    "status": "rejected",
                    "id": exc.request_id,
                    "errors": exc.problems,
                    "reason": exc.reason,
                }
                return Refusal(exc.reason, reply, f"{ctx.prefix}/cmd/{verb}/result")
            return None
        return None
