"""Pushes applied to a daemon serving real ONNX Runtime pipelines (no broker: the control
plane's published messages are collected; the MQTT path is in test_mqtt_control.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from edged.config import parse_config
from edged.control.boot import combine
from edged.control.plane import Message
from edged.control.settings import REDACTED, redact
from edged.control.store import STORE_NAME
from edged.daemon import Daemon
from tests.control.conftest import CounterSampler, Harness, serving_model

TOPIC = "edged/node-1/config/set"


def push(h: Harness, payload: Any, topic: str = TOPIC) -> Dict[str, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return h.plane.process(Message(topic, raw))


def snapshot(h: Harness) -> Tuple[Any, ...]:
    """What must not change when a push fails: the config, the running pipeline objects
    and the persisted state."""
    d = h.daemon
    store = Path(d.config.document["control"]["state_dir"]) / STORE_NAME
    return (
        json.dumps(dict(d.config.document), sort_keys=True),
        {n: (id(s.pipeline), s.state) for n, s in d.models.slots.items()},
        store.read_bytes() if store.exists() else None,
    )


def frames_out(h: Harness, name: str) -> int:
    pipeline = h.daemon.models.slots[name].pipeline
    assert pipeline is not None
    return int(pipeline.stats.counters()["frames_out"])  # type: ignore[call-overload]


def test_push_adding_a_model_is_applied_without_a_gap_and_persisted(
    harness: Harness, base_doc: Dict[str, Any], control_dirs: Dict[str, Path]
) -> None:
    time.sleep(0.3)
    base_pipeline = harness.daemon.models.slots["base"].pipeline
    new = serving_model("added", str(control_dirs["models"] / "second.onnx"))
    with CounterSampler(lambda: frames_out(harness, "base")) as sampler:
        result = push(harness, {"version": 2, "id": "r1", "patch": {"models": [base_doc["models"][0], new]}})
    assert result["status"] == "applied", result
    assert result["id"] == "r1" and result["version"] == 2
    assert result["changes"] == {"added": ["added"], "changed": [], "removed": [], "unchanged": ["base"]}
    # The untouched model kept its pipeline and never stopped producing (200 fps source:
    # a 5 ms period; 0.25 s without a frame would be a gap).
    assert harness.daemon.models.slots["base"].pipeline is base_pipeline
    assert sampler.longest_stall_s() < 0.25, sampler.samples
    time.sleep(0.3)
    assert frames_out(harness, "added") > 0
    topics = [t for t, *_ in harness.published]
    assert topics == ["edged/node-1/config/state", "edged/node-1/config/result"]
    state = json.loads(harness.published[0][1])
    assert state["version"] == 2 and state["source"] == "pushed" and harness.published[0][2] is True
    assert set(state["models"]) == {"base", "added"}
    # A restart comes up with the pushed config layered on the local file.
    effective = combine(parse_config(base_doc))
    assert effective.source == "pushed" and effective.config.version == 2
    assert [m.name for m in effective.config.models] == ["base", "added"]


def test_changing_a_model_switches_only_after_the_new_pipeline_serves(
    harness: Harness, base_doc: Dict[str, Any]
) -> None:
    time.sleep(0.2)
    changed = dict(base_doc["models"][0], batch=2)
    with CounterSampler(lambda: frames_out(harness, "base")) as sampler:
        result = push(harness, {"version": 2, "patch": {"models": [changed]}})
    assert result["status"] == "applied" and result["changes"]["changed"] == ["base"]
    # The sampler reads whichever pipeline is current: output never stalls.
    assert sampler.longest_stall_s() < 0.25
    assert harness.daemon.config.model("base").batch == 2


@pytest.mark.parametrize(
    ("case", "expected_status", "expected"),
    [
        ("schema", "rejected", "models[1].batch: 0 is less than the minimum of 1"),
        ("traversal", "rejected", "'..' is not allowed"),
        ("oversized", "rejected", "exceeds control.max_payload_bytes"),
        ("stale", "rejected", "version: 1 is not newer than the applied version 1"),
        ("unknown-file", "rejected", "no such file or folder"),
        ("fails-to-load", "rolled_back", "models.added: "),
    ],
)
def test_bad_pushes_leave_everything_as_it_was(
    harness: Harness,
    base_doc: Dict[str, Any],
    control_dirs: Dict[str, Path],
    case: str,
    expected_status: str,
    expected: str,
) -> None:
    models = control_dirs["models"]
    added = serving_model("added", str(models / "second.onnx"))
    payload: Any = {"version": 2, "patch": {"models": [base_doc["models"][0], added]}}
    if case == "schema":
        added["batch"] = 0
    elif case == "traversal":
        added["path"] = f"{models}/../../{models.parent.name}/models/second.onnx"
    elif case == "oversized":
        payload = json.dumps(dict(payload, id="x" * 300000)).encode()
    elif case == "stale":
        payload["version"] = 1
    elif case == "unknown-file":
        added["path"] = str(models / "missing.onnx")
    elif case == "fails-to-load":
        added["path"] = str(models / "broken.onnx")
    before = snapshot(harness)
    result = push(harness, payload)
    assert result["status"] == expected_status
    assert any(expected in e for e in result["errors"]), result["errors"]
    if case == "fails-to-load":
        assert str(models / "broken.onnx") in result["errors"][0]
    assert snapshot(harness) == before
    assert [t for t, *_ in harness.published] == ["edged/node-1/config/result"]


def test_a_model_failing_after_others_were_built_rolls_all_back(
    harness: Harness, base_doc: Dict[str, Any], control_dirs: Dict[str, Path]
) -> None:
    models = control_dirs["models"]
    good = serving_model("good", str(models / "second.onnx"))
    bad = serving_model("bad", str(models / "broken.onnx"))
    changed = dict(base_doc["models"][0], batch=2)
    before = snapshot(harness)
    result = push(harness, {"version": 2, "patch": {"models": [changed, good, bad]}})
    assert result["status"] == "rolled_back" and result["errors"][0].startswith("models.bad: ")
    assert snapshot(harness) == before
    assert harness.daemon.models.slots["base"].pipeline.state == "running"  # type: ignore[union-attr]


def test_failed_persist_rolls_back(harness: Harness, base_doc: Dict[str, Any], control_dirs: Dict[str, Path]) -> None:
    control_dirs["state"].write_text("a file where the state directory should be")
    before = snapshot(harness)
    result = push(harness, {"version": 2, "patch": {"telemetry": {"period_s": 1}}})
    assert result["status"] == "rolled_back" and "control.state_dir: cannot persist" in result["errors"][0]
    assert snapshot(harness) == before


def test_quick_pushes_are_acknowledged_in_order_and_the_higher_version_wins(harness: Harness) -> None:
    for version, period in ((2, 1.0), (3, 2.0)):
        raw = json.dumps({"version": version, "patch": {"telemetry": {"period_s": period}}}).encode()
        harness.plane.submit(Message(TOPIC, raw))
    deadline = time.monotonic() + 20
    while harness.plane.processed < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    results = [json.loads(p) for t, p, *_ in harness.published if t.endswith("/result")]
    assert [(r["version"], r["status"]) for r in results] == [(2, "applied"), (3, "applied")]
    assert harness.daemon.config.version == 3 and harness.daemon.config.telemetry.period_s == 2.0
    # Overtaken: the lower version arriving second is answered, and changes nothing.
    for version, period in ((5, 4.0), (4, 3.0)):
        push(harness, {"version": version, "patch": {"telemetry": {"period_s": period}}})
    results = [json.loads(p) for t, p, *_ in harness.published if t.endswith("/result")]
    assert [(r["version"], r["status"]) for r in results[2:]] == [(5, "applied"), (4, "rejected")]
    assert harness.daemon.config.version == 5 and harness.daemon.config.telemetry.period_s == 4.0


def test_a_redelivered_push_is_applied_once(harness: Harness) -> None:
    payload = {"version": 2, "patch": {"telemetry": {"period_s": 1}}}
    assert push(harness, payload)["status"] == "applied"
    assert push(harness, payload)["status"] == "duplicate"
    assert push(harness, payload)["status"] == "duplicate"
    states = [t for t, *_ in harness.published if t.endswith("/state")]
    assert len(states) == 1


def test_group_push_is_accepted_and_state_is_redacted(base_doc: Dict[str, Any]) -> None:
    base_doc["mqtt"] = {"host": "localhost"}
    base_doc["models"] = []
    h = Harness(base_doc)
    result = push(h, {"version": 2, "patch": {"telemetry": {"period_s": 1}}}, topic="edged/group/lab/config/set")
    assert result["status"] == "applied"
    assert "edged/group/lab/config/set" in h.plane.subscriptions()
    state = json.loads([p for t, p, *_ in h.published if t.endswith("/state")][-1])
    assert state["config"]["mqtt"]["host"] == "localhost"
    doc = {"mqtt": {"host": "h", "password": "hunter2", "tls": {"key_password": "x", "ca": "/c"}}, "n": [{"token": 1}]}
    assert redact(doc) == {
        "mqtt": {"host": "h", "password": REDACTED, "tls": {"key_password": REDACTED, "ca": "/c"}},
        "n": [{"token": REDACTED}],
    }


def test_commands_snapshot_rebuild_and_reload(harness: Harness, base_doc: Dict[str, Any], tmp_path: Path) -> None:
    snap = harness.plane.process(Message("edged/node-1/cmd/snapshot", b'{"id": "s1"}'))
    assert snap["status"] == "ok" and snap["id"] == "s1" and snap["models"]["base"]["state"] == "running"
    old = harness.daemon.models.slots["base"].pipeline
    rebuilt = harness.plane.process(Message("edged/node-1/cmd/rebuild-plans", b""))
    assert rebuilt["status"] == "ok" and rebuilt["changes"]["changed"] == ["base"]
    assert harness.daemon.models.slots["base"].pipeline is not old
    failed = harness.plane.process(Message("edged/node-1/cmd/reload", b""))
    assert failed["status"] == "failed" and "not started from a config file" in failed["errors"][0]
    unknown = harness.plane.process(Message("edged/node-1/cmd/explode", b""))
    assert unknown["status"] == "rejected" and "unknown command" in unknown["errors"][0]
    assert [t for t, *_ in harness.published if t.endswith("result")][-1] == "edged/node-1/cmd/explode/result"


def test_reload_rereads_the_file_and_keeps_the_old_config_on_errors(
    base_doc: Dict[str, Any], control_dirs: Dict[str, Path], tmp_path: Path
) -> None:
    import yaml

    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(base_doc))
    daemon = Daemon(parse_config(base_doc), config_path=str(path))
    daemon.models.start()
    try:
        base_doc["models"].append(serving_model("extra", str(control_dirs["models"] / "second.onnx")))
        path.write_text(yaml.safe_dump(base_doc))
        daemon.reload()
        assert list(daemon.models.slots) == ["base", "extra"]
        kept = {n: s.pipeline for n, s in daemon.models.slots.items()}
        path.write_text("models: [")
        with pytest.raises(Exception, match="invalid YAML"):
            daemon.reload()
        assert {n: s.pipeline for n, s in daemon.models.slots.items()} == kept
    finally:
        daemon.models.stop()


def test_signed_pushes_only_when_public_keys_are_configured(
    base_doc: Dict[str, Any], control_dirs: Dict[str, Path]
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from edged.control.canonical import public_key_text, sign_payload

    trusted, stranger = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    base_doc["control"]["public_keys"] = [public_key_text(trusted)]
    h = Harness(base_doc)
    try:
        payload: Dict[str, Any] = {"version": 2, "target": "node-1", "patch": {"telemetry": {"period_s": 1}}}
        before = snapshot(h)
        for signature, expected in (
            (None, "signature: required"),
            (sign_payload(payload, stranger), "does not verify"),
            (sign_payload(dict(payload, version=3), trusted), "does not verify"),
        ):
            attempt = dict(payload) if signature is None else dict(payload, signature=signature)
            result = push(h, attempt)
            assert result["status"] == "rejected" and expected in result["errors"][0]
            assert snapshot(h) == before
        assert push(h, dict(payload, signature=sign_payload(payload, trusted)))["status"] == "applied"
        command = h.plane.process(Message("edged/node-1/cmd/snapshot", b"{}"))
        assert command["status"] == "rejected" and "signature: required" in command["errors"][0]
    finally:
        h.close()


def test_boot_layering_takes_local_only_keys_from_the_file(
    harness: Harness, base_doc: Dict[str, Any], control_dirs: Dict[str, Path]
) -> None:
    assert push(harness, {"version": 5, "patch": {"telemetry": {"period_s": 3}}})["status"] == "applied"
    base_doc["device"]["id"] = "renamed"
    base_doc["device"]["groups"] = []
    effective = combine(parse_config(base_doc))
    assert effective.source == "pushed" and effective.config.version == 5
    assert effective.config.device.id == "renamed" and effective.config.device.groups == ()
    assert effective.config.telemetry.period_s == 3
    store = Path(base_doc["control"]["state_dir"]) / STORE_NAME
    assert oct(store.stat().st_mode & 0o777) == "0o600"
    store.write_text("{not json")
    assert combine(parse_config(base_doc)).source == "file"
