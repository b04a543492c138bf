from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from edged.config import parse_config
from edged.daemon import Daemon
from edged.plans import PlanStore

REPO = Path(__file__).resolve().parents[2]


def _model(name: str, path: Path, tmp_path: Path, count: int = 0, fps: float = 50) -> Dict[str, Any]:
    return {
        "name": name,
        "path": str(path),
        "threads": 1,
        "source": {"type": "synthetic", "fps": fps, "count": count, "size": [64, 64]},
        "sink": {"type": "jsonl", "path": str(tmp_path / f"{name}.jsonl")},
    }


def _doc(tmp_path: Path, *models: Dict[str, Any]) -> Dict[str, Any]:
    return {"device": {"id": "p"}, "plans": {"cache_dir": str(tmp_path / "plans")}, "models": list(models)}


def test_warm_boot_uses_the_cache_and_a_corrupt_plan_is_rebuilt_while_others_serve(
    tmp_path: Path, demo_assets: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = demo_assets / "demo-cnn.onnx"
    doc = _doc(tmp_path, _model("good", model, tmp_path, count=20), _model("bad", model, tmp_path, count=20))
    doc["models"][1]["batch"] = 2  # another key for the same file
    first = Daemon(parse_config(doc))
    first.run(duration_s=20)
    assert [s.plan.source for s in first.models.slots.values()] == ["built", "built"]

    store = PlanStore(str(tmp_path / "plans"))
    bad = next(p for p in store.entries() if p.name.startswith("bad."))
    data = bytearray(Path(bad.path).read_bytes())
    data[len(data) // 3] ^= 0x40
    Path(bad.path).write_bytes(bytes(data))

    second = Daemon(parse_config(doc))
    second.run(duration_s=20)
    assert second.models.slots["good"].plan.source == "cache"
    assert second.models.slots["bad"].plan.source == "built"
    assert all(s.pipeline and s.pipeline.stats.counters()["frames_out"] == 20 for s in second.models.slots.values())
    quarantined = [r.message for r in caplog.records if "quarantined" in r.message]
    assert len(quarantined) == 1 and bad.name in quarantined[0]


def test_a_plan_the_backend_refuses_is_quarantined_and_rebuilt(tmp_path: Path, demo_assets: Path) -> None:
    doc = _doc(tmp_path, _model("m", demo_assets / "demo-cnn.onnx", tmp_path, count=5))
    Daemon(parse_config(doc)).run(duration_s=20)
    store = PlanStore(str(tmp_path / "plans"))
    (entry,) = store.entries()
    # Garbage with a matching manifest hash: passes verification, fails in the backend.
    garbage = b"not a plan at all"
    Path(entry.path).write_bytes(garbage)
    manifest_path = Path(entry.path + ".json")
    import hashlib
    import json

    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = hashlib.sha256(garbage).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    daemon = Daemon(parse_config(doc))
    daemon.run(duration_s=20)
    assert daemon.models.slots["m"].plan.source.startswith("rebuilt: the backend refused the cached plan")
    reason = next((tmp_path / "plans" / "quarantine").glob("*.reason")).read_text()
    assert "the backend refused the cached plan" in reason


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "model file not found"), (b"this is not onnx", "onnxruntime cannot load the model")],
)
def test_bad_models_are_named_and_other_models_serve(
    tmp_path: Path, demo_assets: Path, content: Any, expected: str
) -> None:
    bad = tmp_path / "bad.onnx"
    if content is not None:
        bad.write_bytes(content)
    doc = _doc(
        tmp_path,
        _model("bad", bad, tmp_path, count=5),
        _model("good", demo_assets / "demo-cnn.onnx", tmp_path, count=5),
    )
    daemon = Daemon(parse_config(doc))
    daemon.run(duration_s=20)
    error = daemon.models.slots["bad"].error or ""
    assert str(bad) in error and expected in error
    assert daemon.models.slots["good"].pipeline is not None
    assert daemon.models.slots["good"].pipeline.stats.counters()["frames_out"] == 5
    assert not any(p.name.startswith("bad.") for p in (tmp_path / "plans").iterdir())


def test_an_unusable_cache_directory_fails_models_with_its_name(tmp_path: Path, demo_assets: Path) -> None:
    (tmp_path / "file").write_text("")
    doc = _doc(tmp_path, _model("m", demo_assets / "demo-cnn.onnx", tmp_path, count=5))
    doc["plans"]["cache_dir"] = str(tmp_path / "file" / "plans")
    daemon = Daemon(parse_config(doc))
    daemon.run(duration_s=5)
    assert "plans.cache_dir: cannot create" in (daemon.models.slots["m"].error or "")


def _plan_build(config: Path) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "edged", "plan", "--config", str(config), "build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
    )


def test_two_processes_build_one_plan_once(tmp_path: Path, demo_assets: Path) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(_doc(tmp_path, _model("m", demo_assets / "demo-cnn.onnx", tmp_path))))
    procs = [_plan_build(config) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    builds = sum(err.count("building plan") for _, err in outputs)
    assert builds == 1
    assert len(PlanStore(str(tmp_path / "plans")).entries()) == 1


@pytest.mark.slow
def test_kill_9_during_builds_never_leaves_a_loadable_partial_plan(tmp_path: Path) -> None:
    bench_model = tmp_path / "mobilenet.onnx"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_bench_model.py"), "--out", str(bench_model)], check=True)
    config = tmp_path / "edged.yaml"
    models = [_model(f"m{b}", bench_model, tmp_path) for b in (1, 2, 3)]
    for batch, model in enumerate(models, start=1):
        model["batch"] = batch
    config.write_text(yaml.safe_dump(_doc(tmp_path, *models)))
    rng = random.Random(7)
    for _ in range(20):
        proc = _plan_build(config)
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        store = PlanStore(str(tmp_path / "plans"))
        assert all(row["ok"] for row in store.verify())  # whatever is listed is whole
        for entry in store.entries():  # and loads
            import onnxruntime as ort

            ort.InferenceSession(Path(entry.path).read_bytes(), providers=["CPUExecutionProvider"])
        for p in store.entries():  # start the next round from scratch, so kills keep hitting builds
            Path(p.path).unlink()
            Path(p.path + ".json").unlink()
    final = _plan_build(config)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert len(PlanStore(str(tmp_path / "plans")).entries()) == 3
