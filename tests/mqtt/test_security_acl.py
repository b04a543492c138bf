"""The mosquitto ACL that docs/security.md gives, run on a real mosquitto: each role
reaches exactly the topics the document says."""

from __future__ import annotations

import queue
import re
import time
from pathlib import Path
from typing import List, Tuple

from edged.ctl.session import BrokerOptions, Received, Session
from tests.mqtt.broker import Mosquitto

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _acl_from_doc() -> List[str]:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"`/etc/mosquitto/acl`.*?```\n(.*?)```", text, re.S)
    assert match, "docs/security.md has no ACL block"
    return [line for line in match.group(1).splitlines() if line and not line.startswith("#")]


def _session(broker: Mosquitto, user: str) -> Session:
    session = Session(BrokerOptions(host="127.0.0.1", port=broker.port, username=user, password=f"{user}-pw"), user)
    session.connect()
    return session


def _got(session: Session, wait_s: float = 0.5) -> List[Tuple[str, bytes]]:
    seen, deadline = [], time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            msg: Received = session.messages.get(timeout=0.05)
        except queue.Empty:
            continue
        seen.append((msg.topic, msg.payload))
    return seen


def test_each_role_reaches_the_documented_topics(tmp_path: Path) -> None:
    users = {name: f"{name}-pw" for name in ("node-1", "node-2", "operator", "viewer")}
    broker = Mosquitto(tmp_path / "broker", users=users, acl=_acl_from_doc()).start()
    device, other, operator, viewer = (_session(broker, u) for u in ("node-1", "node-2", "operator", "viewer"))
    try:
        for topic in ("edged/node-1/config/set", "edged/node-1/cmd/+", "edged/group/lab/config/set"):
            device.subscribe(topic)
        for topic in ("edged/+/telemetry", "edged/+/config/state", "edged/+/config/set"):
            viewer.subscribe(topic)
        operator.subscribe("edged/+/cmd/+/result")
        operator.subscribe("edgectl/+/result")
        time.sleep(0.3)
        operator.publish("edged/node-1/config/set", b"from-operator")
        operator.publish("edged/group/lab/config/set", b"to-group")
        operator.publish("edged/node-1/cmd/snapshot", b"cmd")
        viewer.publish("edged/node-1/config/set", b"from-viewer")
        other.publish("edged/node-1/cmd/reload", b"from-another-device")
        assert sorted(_got(device)) == [
            ("edged/group/lab/config/set", b"to-group"),
            ("edged/node-1/cmd/snapshot", b"cmd"),
            ("edged/node-1/config/set", b"from-operator"),
        ]
        device.publish("edged/node-1/telemetry", b"t1")
        device.publish("edged/node-2/telemetry", b"impersonated")
        device.publish("edged/node-1/cmd/snapshot/result", b"r")
        device.publish("edgectl/abc/result", b"reply")
        assert _got(viewer) == [("edged/node-1/telemetry", b"t1")]  # and no config/set: viewers read no pushes
        assert sorted(_got(operator)) == [("edgectl/abc/result", b"reply"), ("edged/node-1/cmd/snapshot/result", b"r")]

        # Fleet presence (docs/fleet.md): operators ask every device; devices answer as themselves.
        device.subscribe("edged/fleet/presence/query")
        device.subscribe("edged/node-1/status")
        operator.subscribe("edged/+/presence")
        operator.subscribe("edgectl/+/presence")
        time.sleep(0.3)
        operator.publish("edged/fleet/presence/query", b"who")
        viewer.publish("edged/fleet/presence/query", b"viewer-asks")
        assert _got(device) == [("edged/fleet/presence/query", b"who")]
        device.publish("edged/node-1/presence", b"here")
        device.publish("edged/node-2/presence", b"impersonated")
        device.publish("edgectl/q1/presence", b"reply")
        device.publish("edged/node-1/status", b"online")
        assert sorted(_got(operator)) == [("edgectl/q1/presence", b"reply"), ("edged/node-1/presence", b"here")]
        assert _got(device) == [("edged/node-1/status", b"online")]
    finally:
        for session in (device, other, operator, viewer):
            session.close()
        broker.stop()
