"""The TensorRT path through the same accuracy gate, on the TensorRT TEST DOUBLE (no GPU and
no TensorRT here; the double's FP16/INT8 plans compute as tests/trt_double/precision.py
documents): the digits classifier on an Orin NX 8GB (one DLA core) with TensorRT 10.3."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict

import jsonschema
import pytest

import edged.backends
import edged.cuda
import edged.daemon as daemon_mod
import edged.model_set as model_set_mod
from edged.config import parse_config
from edged.errors import BackendUnavailable
from edged.placement.target import preset
from edged.plans import PlanStore
from edged.status import status_lines
from edged.telemetry.snapshot import Snapshotter
from tests.accuracy.conftest import digits_config
from tests.accuracy.digits import Digits
from tests.placement.test_fallback_reporting import SCHEMA
from tests.trt_double import HostCuda, make_tensorrt

pytestmark = pytest.mark.slow


@pytest.fixture()
def trt(monkeypatch: pytest.MonkeyPatch) -> Any:
    module = make_tensorrt("10.3", dla_cores=1)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(edged.cuda, "load_runtime", lambda *a, **k: HostCuda())
    monkeypatch.setattr(model_set_mod, "local_target", lambda *_: preset("orin-nx-8gb"))
    return module


def _plans(tmp_path: Path) -> Dict[str, Dict[str, Any]]:
    """Manifests by ``device.precision``."""
    out = {}
    for entry in PlanStore(str(tmp_path / "plans")).entries():
        options = entry.manifest["key"]["options"]
        out[f"{options['device']}.{options['precision']}"] = entry.manifest
    return out


def _load(doc: Dict[str, Any]) -> Any:
    daemon = daemon_mod.Daemon(parse_config(doc))
    pipeline = daemon.models.load_model(daemon.config.models[0])
    pipeline.close_runners()
    return daemon, pipeline


def test_gpu_int8_calibrated_on_digits_passes(
    trt: Any, digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path
) -> None:
    doc = digits_config(
        digits, digit_folders, tmp_path, backend="tensorrt", device="gpu", precision="int8",
        calibration={"images": str(digit_folders["good"])}, accuracy={"images": str(digit_folders["held_out"])},
    )  # fmt: skip
    daemon, _ = _load(doc)
    verdict = _plans(tmp_path)["gpu.int8"]["accuracy"]
    assert verdict["passed"] and verdict["figures"]["top1_agreement"] >= 0.97
    # The double's INT8 plan does differ from the reference, by its documented emulation.
    assert verdict["figures"]["outputs"]["logits"]["max_abs_error"] > 0
    assert daemon.models.placer.status("digits")["accuracy"]["verdict"] == "passed"


def test_dla_ladder_int8_fp16_then_the_gpu(
    trt: Any, digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path
) -> None:
    """The digits model as convolutions, placed on dla0: INT8 there calibrated on black images
    is refused; FP16 on the DLA is refused by an exact-match limit (max_abs_error 0), so the
    model leaves the DLA; FP16 on the GPU fails the same limit; FP32 on the GPU serves."""
    doc = digits_config(
        digits, digit_folders, tmp_path, path=str(digits.conv_model), backend="tensorrt", precision="int8",
        batch=1, calibration={"images": str(digit_folders["black"])},
        accuracy={"images": str(digit_folders["held_out"]), "fp16": {"max_abs_error": 0}},
    )  # fmt: skip
    assert daemon_mod.Daemon(parse_config(doc)).models.device_of("digits") == "dla0"
    daemon, pipeline = _load(doc)
    plans = _plans(tmp_path)
    assert set(plans) == {"dla0.int8", "dla0.fp16", "gpu.fp16", "gpu.fp32"}
    assert plans["dla0.int8"]["accuracy"]["figures"]["top1_agreement"] < 0.5
    assert any("max abs error" in f for f in plans["dla0.fp16"]["accuracy"]["failures"])
    assert not plans["gpu.fp16"]["accuracy"]["passed"] and "accuracy" not in plans["gpu.fp32"]
    assert pipeline.devices == ["gpu"] and ".gpu.fp32." in pipeline.plan_key.name
    status = daemon.models.placer.status("digits")
    assert status["fell_back_from"] == "dla0" and status["not_on"]["dla0"].startswith("accuracy check failed")
    refused = [(r["device"], r["precision"]) for r in status["accuracy"]["refused"]]
    assert refused == [("dla0", "int8"), ("dla0", "fp16"), ("gpu", "fp16")]
    lines = status_lines(daemon.snapshot())
    assert any("fell back from dla0: accuracy check failed" in line for line in lines)
    assert any("serving fp32" in line for line in lines)
    doc_t = Snapshotter("d1", None, None, 30.0).snapshot(daemon.snapshot().models)
    jsonschema.validate(doc_t, SCHEMA)
    assert doc_t["models"]["digits"]["placement"]["accuracy"]["precision"] == "fp32"


def test_without_onnxruntime_the_reference_is_the_gpu_fp32_plan(
    trt: Any, digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = edged.backends.get_backend

    def no_onnxruntime(name: str) -> Any:
        if name == "onnxruntime":
            raise BackendUnavailable("backend 'onnxruntime' needs the onnxruntime package")
        return real(name)

    monkeypatch.setattr(edged.backends, "get_backend", no_onnxruntime)
    doc = digits_config(
        digits, digit_folders, tmp_path, backend="tensorrt", device="gpu", precision="fp16",
        accuracy={"images": str(digit_folders["held_out"])},
    )  # fmt: skip
    _load(doc)
    plans = _plans(tmp_path)
    verdict = plans["gpu.fp16"]["accuracy"]
    assert verdict["passed"] and verdict["reference"] == "tensorrt fp32 plan on the gpu"
    assert "gpu.fp32" in plans  # built as the reference
