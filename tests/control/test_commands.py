"""Commands are signed like pushes (verb, target and time bound in), are refused when
replayed, and every malformed one is answered."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List

import pytest

from edged.control.canonical import public_key_text, sign_payload
from edged.control.plane import ControlPlane, Message
from tests.control.conftest import Harness

PREFIX = "edged/node-1/cmd"


def _signed(key: Any, verb: str, **fields: Any) -> bytes:
    body: Dict[str, Any] = {"id": f"{verb}-{time.monotonic()}", "verb": verb, "target": "node-1", "ts": time.time()}
    body.update(fields)
    body["signature"] = sign_payload(body, key)
    return json.dumps(body).encode()


def _replies(h: Harness) -> List[Dict[str, Any]]:
    return [json.loads(p) for t, p, *_ in h.published if t.startswith(PREFIX) and t.endswith("/result")]


def test_signed_commands_bind_verb_target_and_time_and_are_not_replayed(base_doc: Dict[str, Any]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    base_doc["control"]["public_keys"] = [public_key_text(key)]
    h = Harness(base_doc)
    try:
        body = _signed(key, "snapshot")
        assert h.plane.process(Message(f"{PREFIX}/snapshot", body))["status"] == "ok"
        replay = h.plane.process(Message(f"{PREFIX}/snapshot", body))
        assert replay["status"] == "rejected" and "replayed" in replay["errors"][0], replay
        # A plane started anew (a restarted daemon) remembers the last accepted command.
        again = ControlPlane(h.daemon, lambda *a: None).process(Message(f"{PREFIX}/snapshot", body))
        assert again["status"] == "rejected" and "replayed" in again["errors"][0], again
        cases = {
            "rebuild-plans": (_signed(key, "snapshot"), "verb: 'snapshot' does not match the topic's"),
            "snapshot": (_signed(key, "snapshot", target="node-2"), "target: 'node-2' is not this device"),
            "reload": (_signed(key, "reload", ts=time.time() - 3600), "from this device's clock (allowed: +/-300 s)"),
        }
        for verb, (payload, expected) in cases.items():
            result = h.plane.process(Message(f"{PREFIX}/{verb}", payload))
            assert result["status"] == "rejected" and expected in result["errors"][0], result
        unsigned = {"id": "u", "verb": "snapshot", "target": "node-1", "ts": time.time()}
        result = h.plane.process(Message(f"{PREFIX}/snapshot", json.dumps(unsigned).encode()))
        assert result["status"] == "rejected" and "signature: required" in result["errors"][0]
        stripped = json.loads(_signed(key, "snapshot"))
        del stripped["ts"]
        stripped["signature"] = sign_payload(stripped, key)
        result = h.plane.process(Message(f"{PREFIX}/snapshot", json.dumps(stripped).encode()))
        assert result["errors"] == ["ts: required in a signed command"]
        rebuilt = h.plane.process(Message(f"{PREFIX}/rebuild-plans", _signed(key, "rebuild-plans", models=["base"])))
        assert rebuilt["status"] == "ok" and rebuilt["changes"]["changed"] == ["base"], rebuilt
    finally:
        h.close()


@pytest.mark.parametrize(
    ("verb", "payload", "expected"),
    [
        ("rebuild-plans", b'{"models": [{}]}', "models: expected a list of model names (strings)"),
        ("rebuild-plans", b'{"models": "base"}', "models: expected a list of model names (strings)"),
        ("snapshot", b'{"models": ["base"]}', "models: only rebuild-plans takes models"),
        ("snapshot", b"[1, 2]", "payload: expected a JSON object"),
        ("snapshot", b"\xff", "payload: not UTF-8"),
        ("reload", b'{"ts": 1e999}', "ts: 1e999 is not a finite number"),
        ("snapshot", b'{"id": 7}', "id: expected a string"),
        ("snapshot", b'{"bogus": 1}', "bogus: unknown key"),
        ("explode", b"", "cmd/explode: unknown command"),
    ],
)
def test_every_malformed_command_is_answered(harness: Harness, verb: str, payload: bytes, expected: str) -> None:
    result = harness.plane.process(Message(f"{PREFIX}/{verb}", payload))
    assert result["status"] == "rejected" and any(expected in e for e in result["errors"]), result
    assert _replies(harness)[-1]["errors"] == result["errors"]
    assert harness.daemon.models.slots["base"].state == "running"
