"""The accuracy gate on real data: the digits classifier (tests/accuracy/digits.py) against
ONNX Runtime's INT8 Q/DQ quantisation, calibrated well and calibrated on black images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np
import pytest

from edged.backends.base import BuildOptions, Runner
from edged.backends.onnxruntime.backend import OnnxRuntimeBackend
from edged.config import parse_config
from edged.daemon import Daemon
from edged.model_state import placement_view
from edged.plans import PlanStore
from edged.status import status_lines
from tests.accuracy.conftest import digits_config
from tests.accuracy.digits import Digits

pytestmark = pytest.mark.slow


def _manifests(tmp_path: Path) -> Dict[str, Dict[str, Any]]:
    return {p.manifest["key"]["options"]["precision"]: p.manifest for p in PlanStore(str(tmp_path / "plans")).entries()}


def test_int8_calibrated_on_digits_passes_and_serves(
    digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path
) -> None:
    doc = digits_config(
        digits, digit_folders, tmp_path, precision="int8", calibration={"images": str(digit_folders["good"])},
        accuracy={"images": str(digit_folders["held_out"])},
    )  # fmt: skip
    daemon = Daemon(parse_config(doc))
    daemon.run(duration_s=60)
    slot = daemon.models.slots["digits"]
    assert slot.pipeline is not None and slot.pipeline.stats.counters()["frames_out"] == 200
    verdict = _manifests(tmp_path)["int8"]["accuracy"]
    assert verdict["passed"] and verdict["precision"] == "int8" and verdict["device"] == "cpu"
    assert verdict["data"]["source"] == "folder" and verdict["data"]["samples"] == 64
    assert verdict["figures"]["top1_agreement"] >= 0.97
    assert verdict["reference"].startswith("onnxruntime fp32 on the cpu")
    outputs = verdict["figures"]["outputs"]["logits"]
    assert 0 < outputs["max_abs_error"] < 5 and outputs["cosine_mean"] > 0.99
    accuracy = daemon.models.placer.status("digits")["accuracy"]
    assert accuracy["precision"] == "int8" and accuracy["verdict"] == "passed" and "refused" not in accuracy
    assert str(slot.pipeline.plan_key.name).split(".")[3] == "int8"


def test_int8_calibrated_on_black_images_is_refused_and_fp16_serves(
    digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path
) -> None:
    doc = digits_config(
        digits, digit_folders, tmp_path, precision="int8", calibration={"images": str(digit_folders["black"])},
        accuracy={"images": str(digit_folders["held_out"])},
    )  # fmt: skip
    daemon = Daemon(parse_config(doc))
    daemon.run(duration_s=60)
    slot = daemon.models.slots["digits"]
    assert slot.pipeline is not None and slot.pipeline.stats.counters()["frames_out"] == 200
    manifests = _manifests(tmp_path)
    refused = manifests["int8"]["accuracy"]
    assert not refused["passed"]
    assert refused["figures"]["top1_agreement"] < 0.8
    assert any("top-1 agreement" in f and "min_top1_agreement" in f for f in refused["failures"])
    assert manifests["fp16"]["accuracy"]["passed"]
    assert str(slot.pipeline.plan_key.name).split(".")[3] == "fp16"
    # The reason and the fallback reach placement's status, the status lines and telemetry.
    accuracy = daemon.models.placer.status("digits")["accuracy"]
    assert accuracy["precision"] == "fp16" and accuracy["configured_precision"] == "int8"
    (step,) = accuracy["refused"]
    assert step["precision"] == "int8" and "top-1 agreement" in step["why"]
    lines = "\n".join(status_lines(daemon.snapshot()))
    assert "int8 refused by the accuracy check" in lines and "serving fp16" in lines
    view = placement_view(daemon.models.placer.status("digits"))
    assert view is not None and view["accuracy"]["refused"][0]["precision"] == "int8"

    # A warm start reuses both verdicts: nothing is checked again.
    checked = {p: m["accuracy"]["checked_at"] for p, m in manifests.items()}
    again = Daemon(parse_config(doc))
    again.run(duration_s=60)
    assert {p: m["accuracy"]["checked_at"] for p, m in _manifests(tmp_path).items()} == checked
    assert again.models.slots["digits"].plan.source == "cache"
    assert again.models.placer.status("digits")["accuracy"]["refused"][0]["precision"] == "int8"


class _Perturbed(Runner):
    """The real runner's outputs, with noise added: a plan that is fast and wrong."""

    def __init__(self, inner: Runner) -> None:
        super().__init__()
        self.inner, self.inputs, self.outputs = inner, inner.inputs, inner.outputs
        self.rng = np.random.default_rng(3)

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        out = self.inner.infer(feeds)
        return {k: v + self.rng.normal(0, 4.0, v.shape).astype(v.dtype) for k, v in out.items()}

    def _close_impl(self) -> None:
        self.inner.close()


class PerturbingBackend(OnnxRuntimeBackend):
    """TEST BACKEND: ONNX Runtime, whose reduced-precision plans give perturbed outputs."""

    def load_plan(self, plan: bytes, options: BuildOptions) -> Runner:
        runner = super().load_plan(plan, options)
        return _Perturbed(runner) if options.precision != "fp32" else runner


def test_a_plan_with_perturbed_outputs_is_refused(
    digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edged.model_loading

    monkeypatch.setattr(edged.model_loading, "get_backend", lambda name: PerturbingBackend())
    doc = digits_config(digits, digit_folders, tmp_path, precision="fp16")
    daemon = Daemon(parse_config(doc))
    pipeline = daemon.models.load_model(daemon.config.models[0])
    try:
        assert str(pipeline.plan_key.name).split(".")[3] == "fp32"
        assert not isinstance(pipeline.runner, _Perturbed)
    finally:
        pipeline.close_runners()
    refused = _manifests(tmp_path)["fp16"]["accuracy"]
    assert not refused["passed"] and refused["figures"]["top1_agreement"] < 0.9
    # No validation folder, no calibration: frames captured from the model's own source.
    assert refused["data"]["source"] == "captured"
    captured = sorted((tmp_path / "plans" / "validation").glob("digits-*/frame-*.npy"))
    assert len(captured) == 64
    accuracy = daemon.models.placer.status("digits")["accuracy"]
    assert accuracy["precision"] == "fp32" and accuracy["verdict"].startswith("not checked")
    assert json.dumps(accuracy)  # plain data for telemetry


def test_plan_verify_accuracy_reruns_the_check_and_plan_show_prints_the_last_result(
    digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from edged.cli import main

    doc = digits_config(
        digits, digit_folders, tmp_path, precision="int8", calibration={"images": str(digit_folders["black"])},
        accuracy={"images": str(digit_folders["held_out"]), "max_images": 32},
    )  # fmt: skip
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["plan", "--config", str(path), "verify", "--accuracy"]) == 1
    assert "no int8 plan for cpu in the cache" in capsys.readouterr().out

    assert main(["plan", "--config", str(path), "build"]) == 0
    out = capsys.readouterr().out
    assert "int8 refused by the accuracy check on cpu: top-1 agreement" in out and "serving fp16" in out
    before = {p: m["accuracy"]["checked_at"] for p, m in _manifests(tmp_path).items()}

    assert main(["plan", "--config", str(path), "verify", "--accuracy"]) == 1
    lines = capsys.readouterr().out.splitlines()
    int8 = next(line for line in lines if line.startswith("digits: ") and ".cpu.int8." in line)
    fp16 = next(line for line in lines if line.startswith("digits: ") and ".cpu.fp16." in line)
    assert "int8 on cpu failed: top-1 agreement" in int8 and "32 samples, folder" in int8
    assert "fp16 on cpu passed" in fp16
    after = _manifests(tmp_path)
    assert all(after[p]["accuracy"]["checked_at"] > before[p] for p in before)  # checked again

    name = after["int8"]["name"]
    assert main(["plan", "--config", str(path), "show", name, "--accuracy"]) == 1
    shown = capsys.readouterr().out
    assert shown.startswith(f"{name}: int8 on cpu failed: top-1 agreement")
    assert "data: 32 validation images from" in shown and "output logits: cosine_mean" in shown
    assert "min_top1_agreement 0.97" in shown
    assert main(["plan", "--config", str(path), "show", name]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"]["passed"] is False


def test_judged_on_its_own_black_calibration_images_the_degenerate_plan_would_pass(
    digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path
) -> None:
    """Why a validation folder comes before the calibration images (docs/accuracy.md)."""
    doc = digits_config(
        digits, digit_folders, tmp_path, precision="int8", calibration={"images": str(digit_folders["black"])}
    )
    daemon = Daemon(parse_config(doc))
    daemon.models.load_model(daemon.config.models[0]).close_runners()
    verdict = _manifests(tmp_path)["int8"]["accuracy"]
    assert verdict["data"]["source"] == "calibration" and verdict["data"]["samples"] == 20
    assert verdict["passed"] and verdict["figures"]["top1_agreement"] == 1.0
