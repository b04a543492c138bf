from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

from edged.config import parse_config
from edged.control.payload import DuplicatePush, PushRejected, parse_push
from edged.control.settings import control_settings
from tests.control.conftest import serving_model


def _problems(base_doc: Dict[str, Any], payload: Any, **kwargs: Any) -> List[str]:
    config = parse_config(base_doc)
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(PushRejected) as info:
        parse_push(raw, config, control_settings(config), **kwargs)
    return info.value.problems


def _add(base_doc: Dict[str, Any], path: str, version: int = 2) -> Dict[str, Any]:
    return {"version": version, "patch": {"models": [*base_doc["models"], serving_model("new", path)]}}


def test_patch_yields_the_complete_config_with_local_keys_kept(base_doc: Dict[str, Any], control_dirs: Any) -> None:
    config = parse_config(base_doc)
    payload = _add(base_doc, str(control_dirs["models"] / "second.onnx"))
    push = parse_push(json.dumps(payload).encode(), config, control_settings(config))
    assert push.version == 2 and push.document["version"] == 2
    assert [m["name"] for m in push.document["models"]] == ["base", "new"]
    assert push.document["device"] == config.document["device"]
    assert push.document["control"] == config.document["control"]


def test_full_config_without_local_sections_inherits_them(base_doc: Dict[str, Any]) -> None:
    config = parse_config(base_doc)
    payload = {"version": 9, "config": {"models": base_doc["models"], "telemetry": {"period_s": 3}}}
    push = parse_push(json.dumps(payload).encode(), config, control_settings(config))
    assert push.document["device"]["id"] == "node-1"
    assert push.document["plans"] == config.document["plans"]
    assert push.document["telemetry"]["period_s"] == 3


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\xff\xfe", "payload: not UTF-8"),
        (b"{", "payload: invalid JSON"),
        (b'{"version": NaN, "patch": {}}', "version: NaN is not a finite number"),
        (b"[1]", "payload: expected a JSON object"),
        (b"[" * 100000 + b"]" * 100000, "payload: nested deeper than"),
        ({"patch": {}}, "version: required"),
        ({"version": True, "patch": {}}, "version: required"),
        ({"version": 2}, "config/patch: give exactly one"),
        ({"version": 2, "patch": [], "x": 1}, "x: unknown key"),
        ({"version": 2, "patch": {"models": [{"name": "bad name"}]}}, "models[0].name: 'bad name' does not match"),
        ({"version": 2, "patch": {"telemetry": {"period_s": -1}}}, "telemetry.period_s:"),
        ({"version": 2, "patch": {"device": {"id": "other"}}}, "device.id: set only in the local config file"),
        ({"version": 2, "patch": {"control": {"model_dirs": ["/"]}}}, "control: set only in the local config file"),
        ({"version": 2, "patch": {"mqtt": {"host": "evil"}}}, "mqtt: set only in the local config file"),
        ({"version": 2, "config": {"version": 3, "models": []}}, "config.version: 3 differs from the push version 2"),
        ({"version": 2, "target": "other-node", "patch": {}}, "target: 'other-node' is not this device"),
    ],
)
def test_malformed_pushes_name_the_problem(base_doc: Dict[str, Any], payload: Any, expected: str) -> None:
    problems = _problems(base_doc, payload, targets=["node-1", "lab"])
    assert any(expected in p for p in problems), problems


def test_oversized_payload_is_refused_before_parsing(base_doc: Dict[str, Any]) -> None:
    base_doc["control"]["max_payload_bytes"] = 4096
    problems = _problems(base_doc, b"{" + b" " * 5000)
    assert problems == ["payload: 5001 bytes exceeds control.max_payload_bytes (4096)"]


def test_stale_and_replayed_versions_are_refused(base_doc: Dict[str, Any]) -> None:
    base_doc["version"] = 5
    for version in (4, 5):
        problems = _problems(base_doc, {"version": version, "patch": {}})
        assert problems == [f"version: {version} is not newer than the applied version 5 (stale or replayed)"]


def test_the_applied_push_delivered_again_is_a_duplicate(base_doc: Dict[str, Any]) -> None:
    config = parse_config(base_doc)
    raw = json.dumps({"version": 2, "patch": {}}).encode()
    push = parse_push(raw, config, control_settings(config))
    applied = parse_config(push.document)
    with pytest.raises(DuplicatePush):
        parse_push(raw, applied, control_settings(applied), applied_digest=push.digest)


def test_path_traversal_symlink_escape_and_missing_files(base_doc: Dict[str, Any], control_dirs: Any) -> None:
    models: Path = control_dirs["models"]
    os.symlink(control_dirs["outside"] / "demo-cnn.onnx", models / "escape.onnx")
    cases = {
        str(models) + "/../models/demo-cnn.onnx": "'..' is not allowed",
        str(control_dirs["outside"] / "demo-cnn.onnx"): "is outside control.model_dirs",
        str(models / "escape.onnx"): "is outside control.model_dirs",
        str(models / "nope.onnx"): "models[1].path: no such file or folder",
        "relative.onnx": "must be an absolute path",
    }
    for path, expected in cases.items():
        problems = _problems(base_doc, _add(base_doc, path))
        assert len(problems) == 1 and expected in problems[0] and problems[0].startswith("models[1].path"), problems


def test_sink_and_source_paths_are_confined_to_data_dirs(base_doc: Dict[str, Any], control_dirs: Any) -> None:
    payload = _add(base_doc, str(control_dirs["models"] / "second.onnx"))
    payload["patch"]["models"][1]["sink"] = {"type": "jsonl", "path": "/etc/cron.d/evil"}
    payload["patch"]["models"][1]["source"] = {"type": "images", "path": "/root"}
    problems = _problems(base_doc, payload)
    assert any(p.startswith("models[1].sink.path: '/etc/cron.d/evil' is outside control.data_dirs") for p in problems)
    assert any(p.startswith("models[1].source.path: '/root' is outside control.data_dirs") for p in problems)


def test_paths_already_in_use_may_stay_outside(base_doc: Dict[str, Any], control_dirs: Any) -> None:
    base_doc["models"][0]["path"] = str(control_dirs["outside"] / "demo-cnn.onnx")
    config = parse_config(base_doc)
    raw = json.dumps({"version": 2, "patch": {"telemetry": {"period_s": 1}}}).encode()
    assert parse_push(raw, config, control_settings(config)).document["telemetry"]["period_s"] == 1


def test_sinks_and_labels_inside_the_configured_directories_pass(base_doc: Dict[str, Any], control_dirs: Any) -> None:
    config = parse_config(base_doc)
    payload = _add(base_doc, str(control_dirs["models"] / "second.onnx"))
    (control_dirs["models"] / "labels.txt").write_text("a\nb\n")
    payload["patch"]["models"][1]["sink"] = {"type": "jsonl", "path": str(control_dirs["data"] / "out" / "r.jsonl")}
    payload["patch"]["models"][1]["postprocess"] = {
        "type": "classify",
        "labels": str(control_dirs["models"] / "labels.txt"),
    }
    push = parse_push(json.dumps(payload).encode(), config, control_settings(config))
    assert push.document["models"][1]["sink"]["path"].endswith("r.jsonl")
