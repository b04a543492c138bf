"""Against a real mosquitto and a real ``edged run``: a junk flood never costs a valid push
its place, every junk message is answered and counted, and signed commands from edgectl
cannot be replayed."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import yaml

from edged.ctl.session import BrokerOptions, Received, Session
from tests.control.test_mqtt_control import Edged, edgectl
from tests.mqtt.broker import Mosquitto

pytestmark = pytest.mark.slow

JUNK = 2000


def _wait(messages: "queue.Queue[Received]", topic: str, predicate: Any, timeout: float) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = messages.get(timeout=0.2)
        except queue.Empty:
            continue
        if msg.topic == topic:
            doc = json.loads(msg.payload)
            if predicate(doc):
                return doc  # type: ignore[no-any-return]
    raise AssertionError(f"nothing matching on {topic} within {timeout}s")


def _junk(index: int, signed_stale: bytes) -> bytes:
    kind = index % 3
    if kind == 0:
        return signed_stale  # large, correctly signed, but not newer than the version in force
    if kind == 1:
        return b'{"version": 99, "patch": {' + b"x" * 20000  # truncated JSON
    return json.dumps({"version": 10 + index, "patch": {}, "signature": "A" * 86 + "=="}).encode()


@pytest.fixture()
def roomy_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that queues every message for a slow subscriber. Mosquitto's default
    (max_queued_messages 1000) drops beyond that for a client that reads slower than a
    flood arrives, before edged ever sees the messages; that limit is the broker
    operator's (docs/security.md), what is tested here is edged's side."""
    server = Mosquitto(tmp_path / "broker", options=["max_queued_messages 0"]).start()
    yield server
    server.stop()


def test_a_valid_push_after_a_junk_flood_is_applied(
    roomy_broker: Mosquitto, base_doc: Dict[str, Any], control_dirs: Dict[str, Path], tmp_path: Path
) -> None:
    broker = roomy_broker
    key = tmp_path / "operator.pem"
    made = edgectl(broker.port, "keygen", str(key))
    assert made.returncode == 0, made.stderr
    base_doc["control"]["public_keys"] = [made.stdout.strip()]
    base_doc["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(base_doc))

    from edged.control.canonical import load_private_key, sign_payload

    private = load_private_key(key.read_bytes())
    stale: Dict[str, Any] = {"version": 1, "id": "s" * 50000, "target": "node-1", "patch": {}}
    stale["signature"] = sign_payload(stale, private)
    signed_stale = json.dumps(stale).encode()

    observer = Session(BrokerOptions(host="127.0.0.1", port=broker.port), client_id="test-observer")
    observer.connect()
    for topic in ("config/result", "config/state", "cmd/snapshot", "cmd/snapshot/result"):
        observer.subscribe(f"edged/node-1/{topic}")
    edged = Edged(config)
    try:
        _wait(observer.messages, "edged/node-1/config/state", lambda d: d["version"] == 1, 30)
        flooder = Session(BrokerOptions(host="127.0.0.1", port=broker.port), client_id="test-flooder")
        flooder.connect()
        started = time.monotonic()
        for index in range(JUNK):
            # Not waiting for each acknowledgement: the flood arrives as fast as the broker
            # passes it on; the last one is waited for, so all of it is ahead of the push.
            wait_s = 60.0 if index == JUNK - 1 else 0.0
            flooder.publish("edged/node-1/config/set", _junk(index, signed_stale), wait_s=wait_s)
        push_file = tmp_path / "push.json"
        push_file.write_text(json.dumps({"patch": {"telemetry": {"period_s": 1}}}))
        out = edgectl(broker.port, "push", "node-1", str(push_file), "--version", "2", "--sign", str(key))
        flood_s = time.monotonic() - started
        flooder.close()
        assert out.returncode == 0 and out.stdout.startswith("node-1: applied version 2"), out.stdout + out.stderr
        state = _wait(observer.messages, "edged/node-1/config/state", lambda d: d["version"] == 2, 30)
        refused = state["control"]["refused"]
        assert refused == {"stale_version": 667, "invalid_json": 667, "bad_signature": 666}, refused
        print(f"{JUNK} junk messages and the valid push answered in {flood_s:.1f} s")

        # A signed command from edgectl runs once; the same bytes sent again are refused.
        out = edgectl(broker.port, "cmd", "node-1", "snapshot", "--sign", str(key))
        assert out.returncode == 0 and json.loads(out.stdout)["status"] == "ok", out.stdout + out.stderr
        sent: List[Received] = []
        while not sent:
            msg = observer.messages.get(timeout=10)
            if msg.topic == "edged/node-1/cmd/snapshot":
                sent.append(msg)
        observer.publish("edged/node-1/cmd/snapshot", sent[0].payload)
        replayed = _wait(observer.messages, "edged/node-1/cmd/snapshot/result", lambda d: d["status"] != "ok", 20)
        assert replayed["status"] == "rejected" and "replayed" in replayed["errors"][0], replayed
    finally:
        observer.close()
        edged.stop()
