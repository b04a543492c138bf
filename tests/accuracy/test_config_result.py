"""A pushed config whose INT8 plan the accuracy gate refuses is applied with the fallback,
and config/result says which plan was refused and why (the control plane's published
messages are collected, as in tests/control/test_apply.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest

from edged.control.plane import Message
from tests.accuracy.conftest import digits_config
from tests.accuracy.digits import Digits
from tests.control.conftest import Harness, serving_model

pytestmark = pytest.mark.slow


def test_config_result_reports_the_refused_plan_and_the_fallback(
    digits: Digits, digit_folders: Dict[str, Path], demo_assets: Path, tmp_path: Path
) -> None:
    models, data = tmp_path / "models", tmp_path / "data"
    models.mkdir()
    shutil.copy(digits.model, models / "digits.onnx")
    shutil.copy(demo_assets / "demo-cnn.onnx", models / "demo-cnn.onnx")
    # Calibration and validation images are read by the model: they live in the model dirs
    # (control/confine.py); the held-out digits also feed the source, from the data dirs.
    for name in ("black", "held_out"):
        shutil.copytree(digit_folders[name], models / name)
    shutil.copytree(digit_folders["held_out"], data / "held_out")
    doc: Dict[str, Any] = {
        "version": 1,
        "device": {"id": "node-1"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "control": {"state_dir": str(tmp_path / "state"), "model_dirs": [str(models)], "data_dirs": [str(data)]},
        "models": [serving_model("base", str(models / "demo-cnn.onnx"))],
    }
    harness = Harness(doc)
    try:
        (entry,) = digits_config(
            digits, {"held_out": data / "held_out"}, data, precision="int8",
            calibration={"images": str(models / "black")}, accuracy={"images": str(models / "held_out")},
        )["models"]  # fmt: skip
        entry.update(path=str(models / "digits.onnx"), sink={"type": "null"})
        patch = {"version": 2, "id": "r1", "patch": {"models": [doc["models"][0], entry]}}
        result = harness.plane.process(Message("edged/node-1/config/set", json.dumps(patch).encode()))
        assert result["status"] == "applied", result
        outcome = result["changes"]["accuracy"]["digits"]
        assert outcome["precision"] == "fp16" and outcome["configured_precision"] == "int8"
        assert outcome["refused"][0]["precision"] == "int8" and "top-1 agreement" in outcome["refused"][0]["why"]
        assert "accuracy" not in harness.daemon.models.placer.status("base")
        published = dict((t, json.loads(p)) for t, p, *_ in harness.published)
        assert published["edged/node-1/config/result"]["changes"]["accuracy"]["digits"] == outcome
    finally:
        harness.close()
