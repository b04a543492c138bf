"""Limits for pushes and local files alike: schema ranges, numbers no field can hold,
model count and the predicted memory against the device's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from edged.config import load_config, parse_config
from edged.config.limits import model_memory_bytes, read_mem_total
from edged.control.boot import load_effective
from edged.control.payload import PushRejected, parse_push
from edged.control.settings import control_settings
from edged.errors import ConfigError
from tests.control.conftest import serving_model


def _refused(base_doc: Dict[str, Any], raw: bytes) -> List[str]:
    config = parse_config(base_doc)
    with pytest.raises(PushRejected) as info:
        parse_push(raw, config, control_settings(config))
    return info.value.problems


def _meminfo(root: Path, mem_total_kb: int) -> str:
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "meminfo").write_text(f"MemTotal:       {mem_total_kb} kB\nMemFree:        1000 kB\n")
    return str(root)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'{"version": 2, "patch": {"telemetry": {"period_s": 1e999}}}',
            "patch.telemetry.period_s: 1e999 is not a finite",
        ),
        (b'{"version": 2, "patch": {"telemetry": {"period_s": -1E400}}}', "patch.telemetry.period_s: -1E400 is not"),
        (b'{"version": 2, "patch": {"models": [{"batch": Infinity}]}}', "patch.models[0].batch: Infinity is not"),
        (b'{"version": 2, "patch": {"telemetry": {"window_s": NaN}}}', "patch.telemetry.window_s: NaN is not"),
        (
            b'{"version": 1' + b"0" * 4000 + b', "patch": {}}',
            "version: 1000000000000000000000000... (4001 digits) is not",
        ),
        (b'{"version": 9223372036854775808, "patch": {}}', "version: 9223372036854775808 is outside the signed 64-bit"),
        (b'{"version": 2, "patch": {"telemetry": {"period_s": 0.0001}}}', "telemetry.period_s: 0.0001 is less than"),
    ],
    ids=["1e999", "-1e400", "Infinity", "NaN", "4001-digits", "2**63", "period-0.0001"],
)
def test_numeric_edges_are_rejected_with_their_key_path(base_doc: Dict[str, Any], raw: bytes, expected: str) -> None:
    problems = _refused(base_doc, raw)
    assert any(p.startswith(expected) for p in problems), problems


def test_frame_size_batch_queue_and_model_count_are_bounded(
    base_doc: Dict[str, Any], control_dirs: Dict[str, Path]
) -> None:
    huge = serving_model("huge", str(control_dirs["models"] / "second.onnx"))
    huge["source"]["size"] = [16384, 16384]
    huge.update(batch=4096, queue_size=4096)
    payload = {"version": 2, "patch": {"models": [base_doc["models"][0], huge]}}
    problems = _refused(base_doc, json.dumps(payload).encode())
    assert {p.split(":")[0] for p in problems} == {
        "models[1].source.size[0]",
        "models[1].source.size[1]",
        "models[1].batch",
        "models[1].queue_size",
    }, problems
    many = [serving_model(f"m{i}", str(control_dirs["models"] / "second.onnx")) for i in range(33)]
    problems = _refused(base_doc, json.dumps({"version": 2, "patch": {"models": many}}).encode())
    assert problems == ["models: 33 models exceed limits.max_models (32)"]


def test_predicted_memory_beyond_the_devices_is_refused_before_building(
    base_doc: Dict[str, Any], control_dirs: Dict[str, Path], tmp_path: Path
) -> None:
    base_doc["telemetry"]["root"] = _meminfo(tmp_path / "hw", 4 * 1024 * 1024)  # a 4 GiB device
    assert read_mem_total(base_doc["telemetry"]["root"]) == 4 << 30
    big = serving_model("big", str(control_dirs["models"] / "second.onnx"))
    big["source"]["size"] = [8192, 8192]  # within the schema: 192 MiB a frame, 20 of them held
    problems = _refused(base_doc, json.dumps({"version": 2, "patch": {"models": [big]}}).encode())
    assert len(problems) == 1 and problems[0].startswith("models: predicted memory "), problems
    assert "exceeds limits.memory_fraction 0.8 of this device's 4.00 GiB (3.20 GiB)" in problems[0]
    assert "the largest is models[0] 'big'" in problems[0]
    assert model_memory_bytes(parse_config(dict(base_doc, models=[big])).models[0]) > 3 << 30
    # The same model at 640x640 fits.
    big["source"]["size"] = [640, 640]
    config = parse_config(base_doc)
    raw = json.dumps({"version": 2, "patch": {"models": [big]}}).encode()
    assert parse_push(raw, config, control_settings(config)).version == 2


def test_local_files_keep_the_same_limits(base_doc: Dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "edged.yaml"
    base_doc["telemetry"]["period_s"] = float("inf")
    path.write_text(yaml.safe_dump(base_doc))
    with pytest.raises(ConfigError, match=r"telemetry\.period_s: inf is not a finite number"):
        load_config(path)
    base_doc["telemetry"]["period_s"] = 1
    path.write_text(yaml.safe_dump(base_doc).replace("version: 1\n", "version: 1" + "0" * 4000 + "\n"))
    with pytest.raises(ConfigError, match=r"version: 1000000000000000000000000\.\.\. \(4001 digits\) is outside"):
        load_config(path)
    base_doc["telemetry"]["root"] = _meminfo(tmp_path / "hw", 512 * 1024)
    base_doc["models"][0]["source"]["size"] = [4096, 4096]
    path.write_text(yaml.safe_dump(base_doc))
    assert load_config(path).models[0].source.get("size") == [4096, 4096]  # valid on its own
    with pytest.raises(ConfigError, match=r"predicted memory .* exceeds limits\.memory_fraction"):
        load_effective(path)
