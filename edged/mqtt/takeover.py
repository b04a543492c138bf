"""Telling a second connection with the same client id from a network blip.

MQTT lets one connection per client id live: when a second one connects, the broker
closes the first (MQTT 3.1.1 §3.1.4 point 2; MQTT 5 §3.1.4 sends DISCONNECT with reason
0x8E "Session taken over" first). Two devices sharing an id therefore knock each other
off in a loop, each reconnecting within a second. The link prevents that loop:

- every link instance has a random ``instance`` id, sent in its retained birth status;
- after a connection was lost (not closed by us), the next connection subscribes to the
  device's own status topic before publishing its birth and looks at the retained status:
  ``online`` from another instance means another process holds the id right now;
- that connection then yields: it closes before publishing its birth (so the other's
  status stays intact), reports the conflict, and waits ``mqtt.backoff_max_s`` before it
  looks again, instead of taking the session back.

An MQTT 5 DISCONNECT with 0x8E is counted as well: it says that this link was the one
knocked off. A restarted daemon does not trip the check: its first connection is not
armed, and the retained status of its previous run is the Last Will ``offline``.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Optional

__all__ = ["SESSION_TAKEN_OVER", "TakeoverGuard"]

# MQTT 5.0 §2.4, reason code 0x8E (142): "Session taken over".
SESSION_TAKEN_OVER = 142


class TakeoverGuard:
    def __init__(self) -> None:
        self.instance = uuid.uuid4().hex[:12]
        self.armed = False  # a connection was lost: check the retained status on the next one
        self.taken_over = 0  # MQTT 5 DISCONNECTs with 0x8E received
        self.yielded = 0  # connections closed because another instance was online
        self.other: Optional[str] = None  # the other instance's id, when one was seen
        self._seen = threading.Event()
        self._foreign = False

    def begin_check(self) -> None:
        self._seen.clear()
        self._foreign = False

    def on_status(self, payload: bytes, retained: bool) -> None:
        """The device's own status topic, as delivered on the checking connection."""
        if not retained:
            return
        try:
            doc: Any = json.loads(payload.decode("utf-8"))
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("state") == "online":
            other = doc.get("instance")
            if isinstance(other, str) and other != self.instance:
                self._foreign = True
                self.other = other
        self._seen.set()

    def wait_status(self, timeout_s: float) -> bool:
        """True when a retained status arrived within ``timeout_s`` (no retained status:
        nobody holds the id)."""
        return self._seen.wait(timeout_s)

    @property
    def foreign_online(self) -> bool:
        return self._foreign

    def conflicts(self) -> int:
        return self.taken_over + self.yielded

    def describe(self, client_id: str) -> str:
        other = f" (instance {self.other})" if self.other else ""
        return (
            f"another connection uses client id {client_id!r}{other}: device ids must be unique "
            "(device.id, docs/fleet.md)"
        )
