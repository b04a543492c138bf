"""The fleet as edgectl sees it: who is there, in what state, running which version.

Two sources, merged per device:

- answers to a presence query (edged/telemetry/presence.py): live messages, so they
  reach edgectl on every broker, through wildcards, cluster nodes and bridges;
- retained ``edged/+/status`` messages: they name devices that are offline (their Last
  Will), on brokers that deliver retained messages to wildcard subscriptions (mosquitto,
  ejabberd; not RabbitMQ 3.10).

A survey ends when ``expect`` devices answered, when answers have stopped arriving for
``quiet_s`` after the first, or at ``wait_s``, whichever comes first; so a thousand devices are listed in
well under a second, and an empty broker is reported as such.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from edged.ctl.session import Received, Session

__all__ = ["DeviceView", "Survey", "survey", "select", "QUERY_TOPIC"]

# edged/telemetry/presence.py's topic; edgectl does not import the daemon's side.
QUERY_TOPIC = "edged/fleet/presence/query"
_QUIET_S = 0.3


@dataclass
class DeviceView:
    device: str
    state: str = "unknown"  # online | degraded | offline | unanswered (retained online, no answer)
    software: Optional[str] = None
    version: Optional[int] = None  # the config version in force
    groups: List[str] = field(default_factory=list)
    telemetry_age_s: Optional[float] = None
    models: Dict[str, str] = field(default_factory=dict)
    conflicts: int = 0  # client id conflicts the device reported
    protocol: Optional[str] = None
    answered: bool = False

    def row(self) -> Dict[str, Any]:
        states = sorted(set(self.models.values()))
        return {
            "device": self.device,
            "state": self.state,
            "software": self.software,
            "version": self.version,
            "groups": ",".join(self.groups) or None,
            "telemetry_age_s": self.telemetry_age_s,
            "models": f"{len(self.models)} {'/'.join(states)}" if self.models else None,
            "conflicts": self.conflicts or None,
        }


@dataclass
class Survey:
    devices: Dict[str, DeviceView]
    answers: int  # presence answers received
    retained: int  # retained status messages received
    elapsed_s: float
    query_topic: str = QUERY_TOPIC

    def sorted(self) -> List[DeviceView]:
        return [self.devices[name] for name in sorted(self.devices)]


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return payload.decode("utf-8", "replace").strip()


def _from_status(view: DeviceView, doc: Any) -> None:
    if view.answered:
        return  # a live answer says more than a retained status
    if isinstance(doc, dict):
        state = doc.get("state")
        view.state = "unanswered" if state == "online" else str(state or "unknown")
        view.software = doc.get("version") if isinstance(doc.get("version"), str) else view.software
        groups = doc.get("groups")
        if isinstance(groups, list):
            view.groups = [str(g) for g in groups]
        if isinstance(doc.get("client_id_conflicts"), int):
            view.conflicts = doc["client_id_conflicts"]
    else:
        view.state = str(doc) or "unknown"


def _from_answer(view: DeviceView, doc: Dict[str, Any], now: float) -> None:
    view.answered = True
    view.state = str(doc.get("state", "online"))
    view.software = doc.get("software") if isinstance(doc.get("software"), str) else None
    view.version = doc.get("version") if isinstance(doc.get("version"), int) else None
    view.groups = [str(g) for g in doc.get("groups") or []]
    models = doc.get("models")
    view.models = {str(k): str(v) for k, v in models.items()} if isinstance(models, dict) else {}
    sent = doc.get("telemetry_ts")
    view.telemetry_age_s = round(max(0.0, now - float(sent)), 1) if isinstance(sent, (int, float)) else None
    view.conflicts = int(doc.get("client_id_conflicts") or 0)
    view.protocol = doc.get("protocol") if isinstance(doc.get("protocol"), str) else None


def survey(
    session: Session,
    group: Optional[str] = None,
    wait_s: float = 2.0,
    expect: int = 0,
    quiet_s: float = _QUIET_S,
    retained: bool = True,
) -> Survey:
    """Ask the fleet (or one group) who is there; see the module's docstring."""
    start = time.monotonic()
    request_id = uuid.uuid4().hex
    reply_topic = f"edgectl/{request_id}/presence"
    session.subscribe(reply_topic)
    session.subscribe("edged/+/presence")  # MQTT 3.1.1 brokers drop the response topic
    if retained:
        session.subscribe("edged/+/status")
    time.sleep(0.1)  # let the SUBACKs land before the devices answer
    query: Dict[str, Any] = {"id": request_id}
    if group:
        query["group"] = group
    session.publish(QUERY_TOPIC, json.dumps(query).encode(), qos=0, response_topic=reply_topic)
    devices: Dict[str, DeviceView] = {}
    answers = statuses = 0
    deadline = start + wait_s
    last_answer = 0.0
    while True:
        now = time.monotonic()
        if now >= deadline or (expect and answers >= expect) or (answers and now - last_answer >= quiet_s):
            break
        try:
            msg: Received = session.messages.get(timeout=max(0.01, min(deadline - now, quiet_s / 3)))
        except queue.Empty:
            continue
        parts = msg.topic.split("/")
        doc = _json(msg.payload)
        if parts[-1] == "status" and len(parts) == 3 and msg.retained:
            statuses += 1
            _from_status(devices.setdefault(parts[1], DeviceView(parts[1])), doc)
        elif parts[-1] == "presence" and isinstance(doc, dict) and doc.get("id") == request_id:
            name = str(doc.get("device") or parts[1])
            if not devices.get(name, DeviceView(name)).answered:
                answers += 1
            last_answer = time.monotonic()
            _from_answer(devices.setdefault(name, DeviceView(name)), doc, time.time())
    if group:
        devices = {n: v for n, v in devices.items() if v.answered or group in v.groups}
    return Survey(devices, answers, statuses, time.monotonic() - start)


def select(
    views: Sequence[DeviceView],
    group: Optional[str] = None,
    state: Optional[str] = None,
    version: Optional[int] = None,
    software: Optional[str] = None,
) -> List[DeviceView]:
    """The devices matching every filter given."""
    return [
        v
        for v in views
        if (group is None or group in v.groups)
        and (state is None or v.state == state)
        and (version is None or v.version == version)
        and (software is None or v.software == software)
    ]
