"""tools/hw-validate's logic, run against the TensorRT TEST DOUBLE so the script a user runs
on hardware is not broken, and so each of its checks is seen to fail when what it checks does
not hold. This is not a hardware result."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path
from typing import Any, Dict

import pytest

from edged.backends.base import BuildOptions
from tests.trt_double import HostCuda, make_tensorrt

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "hw-validate"


def _load() -> Any:
    loader = importlib.machinery.SourceFileLoader("hw_validate", str(SCRIPT))
    spec = importlib.util.spec_from_loader("hw_validate", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _backend(version: str, cores: int = 0, compute: Any = (8, 7)) -> Any:
    from edged.backends.tensorrt.backend import TensorRTBackend

    trt = make_tensorrt(version, dla_cores=cores, compute=compute)
    return TensorRTBackend(trt, HostCuda(compute_capability=compute))


def _run(tmp_path: Path, backend: Any, *extra: str, **kw: Any) -> Dict[str, Any]:
    out = tmp_path / "report.json"
    code = _load().main(["--out", str(out), "--work", str(tmp_path / "work"), *extra], backend=backend, **kw)
    report = json.loads(out.read_text())
    report["exit"] = code
    report["by_name"] = {c["check"]: c for c in report["checks"]}
    return report


def _foreign_plan(tmp_path: Path, demo_model: str, version: str, compute: Any) -> Path:
    plan = _backend(version, compute=compute).build_plan(demo_model, BuildOptions(device="gpu")).plan
    path = tmp_path / f"foreign-{version}.plan"
    path.write_bytes(plan)
    return path


@pytest.mark.parametrize(("version", "cores"), [("8.5", 2), ("10.3", 2), ("11.1", 0)])
def test_hw_validate_passes_on_the_double(tmp_path: Path, demo_model: str, version: str, cores: int) -> None:
    other = "8.6" if version != "8.6" else "8.5"
    foreign = _foreign_plan(tmp_path, demo_model, other, (8, 7))
    report = _run(tmp_path, _backend(version, cores), "--foreign-plan", str(foreign))
    checks = report["by_name"]
    assert report["exit"] == 0, [c for c in report["checks"] if c["ok"] is False]
    assert checks["gpu_fp32_build_and_infer"]["max_abs_diff_vs_onnxruntime"] == 0.0
    assert "not compatible with this version of TensorRT" in checks["foreign_plan_refused_then_rebuilt"]["plan_error"]
    assert checks["damaged_plan_refused_then_rebuilt"]["rebuilt"]
    assert checks["timing_cache_reuse"]["proof"].startswith("rebuilt with" if version != "8.5" else "TensorRT 8.x")
    assert set(report["dependencies"]) == {"tensorrt", "numpy", "onnx", "onnxruntime"}
    if version != "11.1":
        assert checks["int8_calibration_cache_written_and_reused"]["batches_rebuild"] == 0
    gate = checks["accuracy_gate"]
    assert gate["ok"] and gate["reference"] == "onnxruntime fp32 on the cpu"
    for plan in ["gpu_fp16", "gpu_int8"] + (["dla0_fp16"] if cores else []):
        figures = gate[plan]
        assert figures["samples"] == 5 and 0 <= figures["top1_agreement"] <= 1
        assert figures["outputs"]["logits"]["cosine_mean"] > 0.9
    if cores:
        strict = checks["dla1_without_fallback"]
        assert strict["ok"] and "GPU fallback" in strict["refused_with"]
    else:
        assert checks["dla"]["ok"] is None


def test_a_plan_from_another_gpu_is_refused_for_its_device(tmp_path: Path, demo_model: str) -> None:
    foreign = _foreign_plan(tmp_path, demo_model, "10.3", (7, 5))
    report = _run(tmp_path, _backend("10.3"), "--foreign-plan", str(foreign))
    assert "incompatible device" in report["by_name"]["foreign_plan_refused_then_rebuilt"]["plan_error"]


def test_each_check_can_fail_and_the_report_is_still_written(tmp_path: Path, demo_model: str) -> None:
    # A "foreign" plan this TensorRT loads happily is not refused: the check must fail.
    own = _foreign_plan(tmp_path, demo_model, "10.3", (8, 7))
    report = _run(tmp_path, _backend("10.3"), "--foreign-plan", str(own))
    assert report["exit"] == 1 and report["by_name"]["foreign_plan_refused_then_rebuilt"]["ok"] is False
    assert "was not refused" in report["by_name"]["foreign_plan_refused_then_rebuilt"]["error"]
    assert report["by_name"]["gpu_fp32_build_and_infer"]["ok"]  # the others still ran


def test_timing_and_int8_reuse_checks_fail_when_caches_are_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edged.backends.tensorrt import builder

    # A backend that never loads a cache it wrote: both reuse checks must catch it.
    monkeypatch.setattr(builder.EngineBuilder, "_state_path", _fresh_every_time(builder.EngineBuilder._state_path))
    report = _run(tmp_path, _backend("10.3"))
    assert report["by_name"]["timing_cache_reuse"]["ok"] is False
    assert report["by_name"]["int8_calibration_cache_written_and_reused"]["ok"] is False
    assert report["exit"] == 1


def _fresh_every_time(original: Any) -> Any:
    counter = [0]

    def state_path(self: Any, opts: Any, kind: str, name: str) -> Any:
        counter[0] += 1
        return original(self, opts, kind, f"{counter[0]}-{name}")

    return state_path


def test_missing_dependencies_and_a_failing_backend_still_write_a_report(tmp_path: Path) -> None:
    def importer(name: str) -> Any:
        if name == "tensorrt":
            raise ImportError(name)
        return __import__(name)

    report = _run(tmp_path, None, importer=importer)
    assert report["exit"] == 1 and report["dependencies"]["tensorrt"] is None
    assert report["by_name"]["dependencies"]["error"] == "missing: tensorrt"

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("no GPU")

    report = _run(tmp_path, Broken())
    assert report["exit"] == 1 and "no GPU" in report["by_name"]["backend"]["error"]
