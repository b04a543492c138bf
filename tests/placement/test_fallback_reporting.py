"""A DLA build that fails on the TensorRT TEST DOUBLE (no GPU, no TensorRT here): the model moves
to the GPU and the reason reaches the status lines and the telemetry document; ``edged plan
build`` builds for placement's device, so its plans are the ones the daemon loads."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import jsonschema
import pytest
import yaml

import edged.cuda
import edged.daemon as daemon_mod
import edged.model_set as model_set_mod
from edged.cli import main
from edged.config import parse_config
from edged.placement.target import preset
from edged.plans import PlanProgress, PlanStore
from edged.status import status_lines
from edged.telemetry.snapshot import Snapshotter
from tests.trt_double import HostCuda, make_tensorrt

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "edged" / "telemetry" / "schema.json").read_text())
COMPILER_ERROR = "DLA compiler: out of local DRAM for subgraph conv"


@pytest.fixture()
def trt(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The 10.3 double on an Orin NX 8GB (one DLA core), as placement sees that module."""
    module = make_tensorrt("10.3", dla_cores=1)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(edged.cuda, "load_runtime", lambda *a, **k: HostCuda())
    monkeypatch.setattr(model_set_mod, "local_target", lambda *_: preset("orin-nx-8gb"))
    return module


def fail_dla_builds(trt: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DLA compiler failure the layer rules cannot foresee: TensorRT logs it and returns None."""
    build = trt.Builder.build_serialized_network

    def build_serialized_network(self: Any, network: Any, config: Any) -> Optional[Any]:
        if config.default_device_type == trt.DeviceType.DLA:
            trt._double.log("ERROR", COMPILER_ERROR)
            return None
        return build(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", build_serialized_network)


def config_doc(demo_config: Dict[str, Any], tmp_path: Path) -> Dict[str, Any]:
    """The demo model on TensorRT in FP16 (placed on dla0), and one ONNX Runtime model on the CPU."""
    trt_model = demo_config["models"][0]
    trt_model.update(backend="tensorrt", precision="fp16", batch=2)
    trt_model["source"]["count"] = 4
    cpu_model = dict(trt_model, name="cpu", backend="onnxruntime", precision="fp32")
    cpu_model["sink"] = {"type": "jsonl", "path": str(tmp_path / "cpu.jsonl")}
    demo_config["models"].append(cpu_model)
    return demo_config


def test_dla_build_failure_reaches_status_and_telemetry(
    trt: Any, demo_config: Dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_dla_builds(trt, monkeypatch)
    daemon = daemon_mod.Daemon(parse_config(config_doc(demo_config, tmp_path)))
    assert daemon.models.device_of("demo") == "dla0"
    daemon.models.start()
    try:
        assert daemon.models.wait_started(timeout=60)
        views = daemon.snapshot().models
        lines = status_lines(daemon.snapshot())
    finally:
        daemon.models.stop()
    assert daemon.models.slots["demo"].error is None

    assert views["demo"].device == "gpu" and views["cpu"].device == "cpu"
    doc = Snapshotter("d1", None, None, 30.0).snapshot(views)
    jsonschema.validate(doc, SCHEMA)
    placement = doc["models"]["demo"]["placement"]
    assert doc["models"]["demo"]["device"] == "gpu" and placement["fell_back_from"] == "dla0"
    assert placement["not_on"]["dla0"].endswith(f"TensorRT 10.3.0 build failed: {COMPILER_ERROR}")
    assert placement["reason"].startswith("gpu: ")
    assert "placement" not in doc["models"]["cpu"]  # nothing to say: the fields are left out
    assert doc["devices"]["gpu"]["models"] == ["demo"] and doc["devices"]["cpu"]["models"] == ["cpu"]

    # One line per model, and one more for the model that fell back.
    assert len(lines) == 3, lines
    assert lines[0].startswith("demo: ") and " on gpu fps " in lines[0]
    assert lines[1] == f"  demo: fell back from dla0: TensorRT 10.3.0 build failed: {COMPILER_ERROR}"
    assert lines[2].startswith("cpu: ") and " on cpu fps " in lines[2]


def plan_build(doc: Dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["plan", "--config", str(path), "build"]) == 0
    return capsys.readouterr().out


def test_plan_build_builds_for_the_placed_dla_core_and_the_daemon_loads_that_plan(
    trt: Any, demo_config: Dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = config_doc(demo_config, tmp_path)
    out = plan_build(doc, tmp_path, capsys)
    assert "fell back" not in out
    store = PlanStore(doc["plans"]["cache_dir"])
    (entry,) = [p for p in store.entries() if p.name.startswith("demo.")]
    assert entry.manifest["key"]["options"]["device"] == "dla0" and ".dla0." in entry.name

    daemon = daemon_mod.Daemon(parse_config(doc))
    progress = PlanProgress()
    daemon.models.load_model(daemon.config.models[0], progress).runner.close()
    assert daemon.models.device_of("demo") == "dla0" and progress.source == "cache"


def test_plan_build_after_a_dla_failure_caches_the_gpu_plan_the_daemon_falls_back_to(
    trt: Any,
    demo_config: Dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_dla_builds(trt, monkeypatch)
    doc = config_doc(demo_config, tmp_path)
    out = plan_build(doc, tmp_path, capsys)
    assert f"  fell back from dla0: TensorRT 10.3.0 build failed: {COMPILER_ERROR}" in out.splitlines()
    (entry,) = [p for p in PlanStore(doc["plans"]["cache_dir"]).entries() if p.name.startswith("demo.")]
    assert entry.manifest["key"]["options"]["device"] == "gpu"

    daemon = daemon_mod.Daemon(parse_config(doc))
    progress = PlanProgress()
    daemon.models.load_model(daemon.config.models[0], progress).runner.close()
    assert daemon.models.device_of("demo") == "gpu" and progress.source == "cache"


def test_a_dla_plan_measured_over_its_budget_moves_to_the_gpu_and_the_profile_is_kept(
    trt: Any, demo_config: Dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = config_doc(demo_config, tmp_path)
    # Estimates: dla0 0.60 ms, gpu 0.30 ms; the budget admits both, so the DLA is chosen (less power).
    doc["models"][0]["latency_budget_ms"] = 0.65
    daemon = daemon_mod.Daemon(parse_config(doc))
    assert daemon.models.device_of("demo") == "dla0"
    # The double's timings say nothing about a DLA: the benchmark reports 2 ms for every plan.
    measured = []

    def slow_benchmark(runner: Any, batch: int, **kwargs: Any) -> Dict[str, Any]:
        measured.append(batch)
        return {"samples_ms": [2.0, 2.0, 2.0]}

    monkeypatch.setattr("edged.bench.measure", slow_benchmark)
    daemon.models.load_model(daemon.config.models[0]).runner.close()
    status = daemon.models.placer.status("demo")
    assert daemon.models.device_of("demo") == "gpu" and status["fell_back_from"] == "dla0"
    assert status["not_on"]["dla0"] == "measured 2.00 ms > budget 0.65 ms"
    assert measured == [2, 2]  # the DLA plan, then the GPU plan (over budget too, but nowhere else to go)

    # Both plans carry their measured profile; a later start reuses it instead of measuring.
    entries = {
        p.manifest["key"]["options"]["device"]: p.manifest for p in PlanStore(doc["plans"]["cache_dir"]).entries()
    }
    assert entries["dla0"]["profile"]["source"] == "measured" and entries["dla0"]["profile"]["latency_ms"] == 2.0
    assert entries["gpu"]["profile"]["latency_ms"] == 2.0
    again = daemon_mod.Daemon(parse_config(doc))
    again.models.load_model(again.config.models[0]).runner.close()
    assert again.models.device_of("demo") == "gpu" and measured == [2, 2]


def test_a_dla_plan_within_its_budget_stays_and_its_benchmark_is_stored(
    trt: Any, demo_config: Dict[str, Any], tmp_path: Path, fixed_benchmark: List[int]
) -> None:
    doc = config_doc(demo_config, tmp_path)
    doc["models"][0]["latency_budget_ms"] = 0.65
    daemon = daemon_mod.Daemon(parse_config(doc))
    daemon.models.load_model(daemon.config.models[0]).runner.close()
    assert fixed_benchmark == [2]
    assert daemon.models.device_of("demo") == "dla0" and "fell_back_from" not in daemon.models.placer.status("demo")
    (entry,) = [p for p in PlanStore(doc["plans"]["cache_dir"]).entries() if p.name.startswith("demo.")]
    assert entry.manifest["profile"]["source"] == "measured" and entry.manifest["profile"]["latency_ms"] == 0.1


def test_a_failed_dla_build_is_remembered_until_pruned(
    trt: Any, demo_config: Dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_dla_builds(trt, monkeypatch)
    doc = config_doc(demo_config, tmp_path)
    builds = []
    build = trt.Builder.build_serialized_network

    def counting(self: Any, network: Any, config: Any) -> Any:
        builds.append("dla" if config.default_device_type == trt.DeviceType.DLA else "gpu")
        return build(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", counting)

    def start() -> daemon_mod.Daemon:
        daemon = daemon_mod.Daemon(parse_config(doc))
        daemon.models.load_model(daemon.config.models[0]).runner.close()
        return daemon

    first = start()
    assert builds == ["dla", "gpu"] and first.models.device_of("demo") == "gpu"
    # The next start skips the DLA build it knows fails, and says why.
    second = start()
    assert builds == ["dla", "gpu"] and second.models.device_of("demo") == "gpu"
    reason = second.models.placer.status("demo")["not_on"]["dla0"]
    assert COMPILER_ERROR in reason and "not retried until `edged plan prune` or a rebuild" in reason
    # Pruning forgets the failure: the DLA build is tried again.
    store = PlanStore(doc["plans"]["cache_dir"])
    assert any(entry.endswith(".failed.json") for entry in store.prune())
    start()
    assert builds == ["dla", "gpu", "dla"]


def test_tensorrt_gpu_fallback_false_reaches_placement(tmp_path: Path) -> None:
    from edged.placement.service import policy_for

    doc = {"device": {"id": "d"}, "models": [{"name": "m", "path": str(tmp_path / "m.onnx"), "backend": "tensorrt"}]}
    assert policy_for(parse_config(doc).models[0]).gpu_fallback is True
    doc["models"][0]["tensorrt"] = {"gpu_fallback": False}
    assert policy_for(parse_config(doc).models[0]).gpu_fallback is False


def test_a_model_placed_on_both_dla_cores_runs_one_engine_on_each(
    demo_config: Dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AGX Orin (two DLA cores): a rate one core cannot sustain gets an engine on each core,
    both fed from the model's one queue; every frame is served exactly once."""
    module = make_tensorrt("10.3", dla_cores=2)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(edged.cuda, "load_runtime", lambda *a, **k: HostCuda())
    monkeypatch.setattr(model_set_mod, "local_target", lambda *_: preset("agx-orin-64gb"))
    doc = config_doc(demo_config, tmp_path)
    del doc["models"][1]
    model = doc["models"][0]
    model["target_fps"] = 5000.0  # estimated 0.6 ms per batch of 2 on one core: ~3300 fps each
    model["source"]["count"] = 40
    model["sink"] = {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}
    daemon = daemon_mod.Daemon(parse_config(doc))
    assert daemon.models.placer.devices_for("demo") == ("dla0", "dla1")
    daemon.models.start()
    try:
        assert daemon.models.wait_started(timeout=60)
        pipeline = daemon.models.slots["demo"].pipeline
        assert pipeline is not None and pipeline.wait(30)
        doc = Snapshotter("d1", None, None, 30.0).snapshot(daemon.snapshot().models)
    finally:
        daemon.models.stop()
    jsonschema.validate(doc, SCHEMA)
    assert doc["models"]["demo"]["engines"] == ["dla0", "dla1"]
    assert doc["devices"]["dla0"]["models"] == ["demo"] and doc["devices"]["dla1"]["models"] == ["demo"]
    assert len(pipeline.runners) == 2 and {core for core, _ in module._double.executions} == {0, 1}
    assert [k.document["options"]["device"] for k in [pipeline.plan_key, *pipeline.extra_plan_keys]] == ["dla0", "dla1"]
    seqs = sorted(json.loads(line)["seq"] for line in (tmp_path / "out.jsonl").read_text().splitlines())
    assert seqs == list(range(40))
