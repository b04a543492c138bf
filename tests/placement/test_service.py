"""Placement for the daemon: config policy → BuildOptions.device, DLA failure → GPU with reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional

import onnx
import pytest

from edged.backends import REGISTRY, BuildOptions, BuiltPlan, Runner
from edged.backends.onnxruntime.backend import OnnxRuntimeBackend
from edged.config import parse_config
from edged.errors import BackendError, ConfigError
from edged.placement.profiles import Profile
from edged.placement.service import Placer
from edged.placement.target import preset
from tests.placement import nets


def write_models(tmp_path: Path) -> Dict[str, str]:
    paths = {}
    for name, model in (
        ("mbv2", nets.mobilenetv2_style()),
        ("gn", nets.norm_net("group")),
        ("rn", nets.resnet_style()),
    ):
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        paths[name] = str(path)
    return paths


def config(paths: Dict[str, str], **per_model: Dict[str, Any]) -> Any:
    models = []
    for name, path in paths.items():
        entry = {"name": name, "path": path, "backend": "tensorrt", "precision": "fp16", "target_fps": 30}
        entry.update(per_model.get(name, {}))
        models.append(entry)
    return parse_config({"device": {"id": "d1"}, "models": models})


def test_policy_keys_are_typed_and_validated() -> None:
    doc = {"device": {"id": "d1"}, "models": [{"name": "m", "path": "/m.onnx"}]}
    model = parse_config(doc).models[0]
    assert (model.gpu_fallback, model.max_dla_subgraphs, model.latency_budget_ms, model.target_fps) == (
        True,
        4,
        None,
        None,
    )
    doc["models"][0].update({"gpu_fallback": False, "max_dla_subgraphs": 2, "latency_budget_ms": 8, "target_fps": 60})
    model = parse_config(doc).models[0]
    assert (model.gpu_fallback, model.max_dla_subgraphs, model.latency_budget_ms, model.target_fps) == (
        False,
        2,
        8.0,
        60.0,
    )
    doc["models"][0]["max_dla_subgraphs"] = 0
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert "models[0].max_dla_subgraphs" in str(err.value) or "max_dla_subgraphs" in str(err.value)


def test_agx_orin_places_dla_models_on_both_cores(tmp_path: Path) -> None:
    placer = Placer(preset("agx-orin-64gb"))
    placer.plan(config(write_models(tmp_path)).models)
    devices = {name: placer.device_for(name) for name in ("mbv2", "gn", "rn")}
    assert devices["gn"] == "gpu"  # too fragmented
    assert {devices["mbv2"], devices["rn"]} <= {"dla0", "dla1"}
    assert "too fragmented" in placer.fallbacks("gn")["dla0"]


def test_orin_nano_and_thor_put_everything_on_gpu(tmp_path: Path) -> None:
    paths = write_models(tmp_path)
    for platform in ("orin-nano-8gb", "agx-thor"):
        placer = Placer(preset(platform))
        placer.plan(config(paths).models)
        assert {placer.device_for(n) for n in paths} == {"gpu"}


def test_explicit_device_is_honoured_and_missing_core_is_reported(tmp_path: Path) -> None:
    paths = write_models(tmp_path)
    placer = Placer(preset("orin-nx-8gb"))
    placer.plan(config(paths, rn={"device": "dla1"}, mbv2={"device": "gpu"}).models)
    assert placer.device_for("mbv2") == "gpu"
    status = placer.status("rn")
    assert status["note"] == "dla1 requested but not present" and "error" in status
    assert "1 DLA core" in status["not_on"]["dla1"]


def test_dla_build_failure_moves_model_to_gpu_and_keeps_others(tmp_path: Path) -> None:
    placer = Placer(preset("agx-orin-64gb"))
    placer.plan(config(write_models(tmp_path)).models)
    before = placer.device_for("mbv2")
    failed = placer.device_for("rn")
    assert placer.fall_back("rn", failed, "DLA compiler: out of memory") == "gpu"
    assert placer.device_for("mbv2") == before
    assert placer.status("rn")["not_on"][failed] == "DLA compiler: out of memory"
    assert placer.status("rn")["fell_back_from"] == failed and "fell_back_from" not in placer.status("mbv2")


def test_fallback_of_a_model_placed_by_rule_keeps_its_reason(tmp_path: Path) -> None:
    placer = Placer(None)  # platform unknown: the device comes from the config, no request
    placer.plan(config(write_models(tmp_path), rn={"device": "dla0"}).models)
    assert placer.fall_back("rn", "dla0", "DLA compiler: out of memory") == "gpu"
    status = placer.status("rn")
    assert (status["device"], status["fell_back_from"]) == ("gpu", "dla0")
    assert status["not_on"] == {"dla0": "DLA compiler: out of memory"}


def test_measured_profile_over_budget_falls_back(tmp_path: Path) -> None:
    placer = Placer(preset("orin-nx-8gb"))
    placer.plan(config(write_models(tmp_path), mbv2={"latency_budget_ms": 5}).models)
    assert placer.device_for("mbv2") == "dla0"
    moved = placer.measured(Profile("mbv2", "dla0", 7.5, 2000.0, source="measured"))
    assert moved == "gpu"
    assert placer.fallbacks("mbv2")["dla0"] == "measured 7.50 ms > budget 5 ms"


def test_replan_keeps_unchanged_models_and_their_fallbacks(tmp_path: Path) -> None:
    paths = write_models(tmp_path)
    placer = Placer(preset("agx-orin-64gb"))
    placer.plan(config(paths).models)
    placer.fall_back("rn", placer.device_for("rn"), "build failed")
    kept = placer.device_for("mbv2")
    placer.plan(config(paths, gn={"target_fps": 10}).models)
    assert placer.device_for("mbv2") == kept and placer.device_for("rn") == "gpu"


def test_onnxruntime_models_keep_cpu_and_unknown_platform_uses_config(tmp_path: Path) -> None:
    paths = write_models(tmp_path)
    placer = Placer(None)
    cfg = parse_config(
        {
            "device": {"id": "d1"},
            "models": [
                {"name": "a", "path": paths["rn"]},
                {"name": "b", "path": paths["rn"], "backend": "tensorrt", "device": "dla"},
                {"name": "c", "path": paths["rn"], "backend": "tensorrt"},
            ],
        }
    )
    placer.plan(cfg.models)
    assert [placer.device_for(n) for n in "abc"] == ["cpu", "dla0", "gpu"]
    assert "platform unknown" in placer.status("b")["note"]


class RecordingBackend(OnnxRuntimeBackend):
    """Test double standing in for the TensorRT backend: records the device it is asked to
    build and load for, fails DLA builds on request, and runs ONNX Runtime underneath."""

    name = "tensorrt"
    builds_in_child = False  # as the TensorRT backend; a child would not see this test's registry
    calls: ClassVar[List[str]] = []
    fail_dla = True

    def build_plan(self, model_path: str, options: BuildOptions, progress: Optional[Any] = None) -> BuiltPlan:
        RecordingBackend.calls.append(f"build:{options.device}")
        if options.device.startswith("dla") and self.fail_dla:
            raise BackendError("DLA build failed: unsupported layer combination")
        built = super().build_plan(model_path, BuildOptions(device="cpu", threads=1))
        if options.device.startswith("dla"):
            # An inspector that saw the classifier head run on the GPU, unlike the prediction.
            built.layer_placement = [
                {"layer": "{ForeignNode[stem...head_pool]}", "device": options.device},
                {"layer": "fc", "device": "gpu"},
            ]
        return built

    def load_plan(self, plan: bytes, options: BuildOptions) -> Runner:
        RecordingBackend.calls.append(f"load:{options.device}")
        return super().load_plan(plan, BuildOptions(device="cpu", threads=1))


def test_daemon_builds_for_placed_device_and_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edged.daemon as daemon_mod
    import edged.model_set as model_set_mod

    path = tmp_path / "rn.onnx"
    onnx.save(nets.resnet_style(), str(path))
    monkeypatch.setitem(REGISTRY, "tensorrt", f"{__name__}:RecordingBackend")
    monkeypatch.setattr(model_set_mod, "local_target", lambda *_: preset("orin-nx-8gb"))
    RecordingBackend.calls = []
    cfg = parse_config(
        {
            "device": {"id": "d1"},
            "plans": {"cache_dir": str(tmp_path / "plans")},
            "models": [{"name": "rn", "path": str(path), "backend": "tensorrt", "precision": "fp16"}],
        }
    )
    daemon = daemon_mod.Daemon(cfg)
    assert daemon.models.placer.device_for("rn") == "dla0"
    pipeline = daemon.models.load_model(cfg.models[0])
    pipeline.runner.close()
    # The second load is the accuracy check's own instance of the fp16 plan (docs/accuracy.md).
    assert RecordingBackend.calls == ["build:dla0", "build:gpu", "load:gpu", "load:gpu"]
    assert daemon.models.placer.status("rn")["not_on"] == {"dla0": "DLA build failed: unsupported layer combination"}


def test_daemon_passes_dla_core_to_build_and_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edged.daemon as daemon_mod
    import edged.model_set as model_set_mod

    path = tmp_path / "rn.onnx"
    onnx.save(nets.resnet_style(), str(path))
    monkeypatch.setitem(REGISTRY, "tensorrt", f"{__name__}:RecordingBackend")
    monkeypatch.setattr(model_set_mod, "local_target", lambda *_: preset("agx-orin-64gb"))
    monkeypatch.setattr(RecordingBackend, "fail_dla", False)
    RecordingBackend.calls = []
    models: List[Mapping[str, Any]] = [
        {"name": n, "path": str(path), "backend": "tensorrt", "precision": "int8", "target_fps": 400}
        for n in ("a", "b")
    ]
    cfg = parse_config({"device": {"id": "d1"}, "plans": {"cache_dir": str(tmp_path / "plans")}, "models": models})
    daemon = daemon_mod.Daemon(cfg)
    for model in cfg.models:
        daemon.models.load_model(model).runner.close()
    # Each DLA plan is loaded twice: to serve, and as the accuracy check's own instance.
    assert RecordingBackend.calls == ["build:dla0", "load:dla0", "load:dla0", "build:dla1", "load:dla1", "load:dla1"]
    differs = daemon.models.placer.status("a")["differs_from_prediction"]
    assert differs == [{"node": "fc", "predicted": "dla", "reported": "gpu", "rule": ""}]
    assert daemon.models.placer.analyses["a"].verdict == "dla_fallback"
