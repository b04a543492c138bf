"""A host with two different dGPUs (FIXTURE tree x86-two-dgpus: an Ampere RTX A4000 and a
Turing T4, with a GPU probe double in place of the CUDA query): placement spreads models
over both GPUs, and plans are keyed per GPU model. No multi-GPU machine is involved."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest

from edged.backends.tensorrt.backend import TensorRTBackend
from edged.config import parse_config
from edged.config.model import ModelConfig
from edged.model_loading import build_options
from edged.placement.service import Placer
from edged.placement.target import from_platform
from edged.plans import PlanManager, PlanStore
from edged.platform import GpuInfo, Platform, discover
from tests.trt_double import HostCuda, make_tensorrt

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "platforms"
AMPERE = GpuInfo("NVIDIA RTX A4000", "8.6", 48, 16376)
TURING = GpuInfo("Tesla T4", "7.5", 40, 15360)

BUILDER = """\
import numpy as np


def build(trt, network, weights_path):
    w = np.load(weights_path)
    x = network.add_input("x", trt.DataType.FLOAT, (1, 3, 8, 8))
    conv = network.add_convolution_nd(x, 4, (3, 3), w["w"], w["b"])
    relu = network.add_activation(conv.get_output(0), trt.ActivationType.RELU)
    relu.get_output(0).name = "y"
    network.mark_output(relu.get_output(0))
"""


def _platform(gpus: List[GpuInfo]) -> Platform:
    return discover(str(FIXTURES / "x86-two-dgpus"), versions=lambda: {"tensorrt": "10.3.0"}, gpu_probe=lambda: gpus)


@pytest.fixture()
def builder_model(tmp_path: Path) -> Iterator[Dict[str, Any]]:
    module = "two_gpu_builder"
    (tmp_path / f"{module}.py").write_text(BUILDER)
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "w.npz", w=rng.normal(size=(4, 3, 3, 3)).astype(np.float32), b=np.zeros(4, np.float32))
    yield {
        "path": str(tmp_path / "w.npz"),
        "format": {"type": "network-builder", "builder": f"{module}:build", "python_path": str(tmp_path)},
    }
    sys.modules.pop(module, None)


def _models(entries: List[Dict[str, Any]]) -> List[ModelConfig]:
    return list(parse_config({"device": {"id": "two-gpus"}, "models": entries}).models)


def test_platform_reports_each_gpu_and_both_are_targets() -> None:
    platform = _platform([AMPERE, TURING])
    assert [(g.name, g.compute_capability, g.sm_count, g.memory_mb) for g in platform.gpus] == [
        ("NVIDIA RTX A4000", "8.6", 48, 16376),
        ("Tesla T4", "7.5", 40, 15360),
    ]
    target = from_platform(platform)
    assert target.trt_version == "10.3" and target.devices() == ["gpu0", "gpu1"]
    assert target.speed_of("gpu0") > target.speed_of("gpu1")  # 48 SMs against 40


def test_three_models_are_spread_over_both_gpus(builder_model: Dict[str, Any], tmp_path: Path) -> None:
    prototxt = tmp_path / "d.prototxt"
    prototxt.write_text('input: "data"')
    uff = {"type": "uff", "inputs": [{"name": "in", "shape": [3, 8, 8]}], "outputs": ["out"]}
    caffe = {"type": "caffe", "prototxt": str(prototxt), "outputs": ["prob"]}
    entries = [
        {"name": "builder", "backend": "tensorrt", "target_fps": 200, **builder_model},
        {"name": "detector", "backend": "tensorrt", "target_fps": 200, "path": "/m/d.caffemodel", "format": caffe},
        {"name": "tf1", "backend": "tensorrt", "target_fps": 200, "path": "/m/m.uff", "format": uff},
    ]
    placer = Placer(from_platform(_platform([AMPERE, TURING])))
    placer.plan(_models(entries))
    devices = {name: placer.device_for(name) for name in ("builder", "detector", "tf1")}
    assert set(devices.values()) == {"gpu0", "gpu1"}
    placement = placer.placement
    assert placement is not None and placement.feasible
    # One GPU alone cannot carry all three at 200 fps; the faster A4000 takes two.
    assert sorted(devices.values()) == ["gpu0", "gpu0", "gpu1"]
    assert all(0 < u <= 1 for u in placement.utilisation.values())


def test_plans_are_kept_apart_per_gpu_model(builder_model: Dict[str, Any], tmp_path: Path) -> None:
    trt = make_tensorrt("10.3", compute=(8, 6))
    # The doubles model one compute capability for the whole host: only the names differ.
    backend = TensorRTBackend(trt, HostCuda(compute_capability=(8, 6), gpus=(AMPERE.name, TURING.name)))
    (model,) = _models([{"name": "builder", "backend": "tensorrt", **builder_model}])
    mixed = PlanManager(PlanStore(str(tmp_path / "plans")), _platform([AMPERE, TURING]))
    on_ampere = mixed.key(model, backend, build_options(model, device="gpu0"))
    on_turing = mixed.key(model, backend, build_options(model, device="gpu1"))
    assert on_ampere.digest != on_turing.digest
    assert on_ampere.document["platform"]["gpus"] == [["NVIDIA RTX A4000", "8.6", 48]]
    assert on_turing.document["platform"]["gpus"] == [["Tesla T4", "7.5", 40]]
    for device in ("gpu0", "gpu1"):
        runner, _ = mixed.obtain(model, backend, build_options(model, device=device))
        runner.close()
    assert len(mixed.manifests()) == 2
    # Two identical cards share one plan: the key names the GPU model, not its index.
    twins = PlanManager(PlanStore(str(tmp_path / "twins")), _platform([AMPERE, AMPERE]))
    assert twins.key(model, backend, build_options(model, device="gpu0")).digest == (
        twins.key(model, backend, build_options(model, device="gpu1")).digest
    )
