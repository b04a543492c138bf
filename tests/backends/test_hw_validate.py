"""tools/hw-validate's logic, run against the TensorRT TEST DOUBLE so the script a user runs
on hardware is not broken. This is not a hardware result."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.trt_double import HostCuda, make_tensorrt

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "hw-validate"


def _load() -> Any:
    loader = importlib.machinery.SourceFileLoader("hw_validate", str(SCRIPT))
    spec = importlib.util.spec_from_loader("hw_validate", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize(("version", "cores"), [("8.5", 2), ("11.1", 0)])
def test_hw_validate_passes_on_the_double(tmp_path: Path, version: str, cores: int) -> None:
    from edged.backends.tensorrt.backend import TensorRTBackend

    backend = TensorRTBackend(make_tensorrt(version, dla_cores=cores), HostCuda())
    out = tmp_path / "report.json"
    assert _load().main(["--out", str(out), "--work", str(tmp_path / "work")], backend=backend) == 0
    report = json.loads(out.read_text())
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["gpu_fp32_build_and_infer"]["max_abs_diff_vs_onnxruntime"] == 0.0
    foreign = checks["foreign_plan_refused_then_rebuilt"]
    assert "cannot load this plan" in foreign["plan_error"] and foreign["rebuilt"]
    gate = checks["accuracy_gate"]
    assert gate["ok"] and gate["reference"] == "onnxruntime fp32 on the cpu"
    for plan in ["gpu_fp16", "gpu_int8"] + (["dla0_fp16"] if cores else []):
        figures = gate[plan]
        assert figures["samples"] == 5 and 0 <= figures["top1_agreement"] <= 1
        assert figures["outputs"]["logits"]["cosine_mean"] > 0.9
    if cores:
        strict = checks["dla1_without_fallback"]
        assert strict["ok"] and "GPU fallback" in strict["refused_with"]
        assert checks["int8_calibration_cache_written_and_reused"]["reused_unchanged"]
    else:
        assert checks["dla"]["ok"] is None
