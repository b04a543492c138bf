"""Pushes that add, remove or change single sources of a running model: applied in place,
with the same engine, and without a gap for the model's other sources."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from edged.control.plane import Message
from edged.plans import PlanManager
from tests.control.conftest import CounterSampler, Harness

TOPIC = "edged/node-1/config/set"


def _push(h: Harness, payload: Any) -> Dict[str, Any]:
    return h.plane.process(Message(TOPIC, json.dumps(payload).encode()))


def _model(path: str, sink: Path, sources: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "name": "cams",
        "path": path,
        "threads": 1,
        "batch": 4,
        "sources": sources,
        "postprocess": {"type": "raw"},
        "sink": {"type": "jsonl", "path": str(sink), "flush_every": 1},
    }


def _synthetic(source_id: str, fps: float, seed: int = 0) -> Dict[str, Any]:
    return {"id": source_id, "type": "synthetic", "fps": fps, "size": [64, 64], "seed": seed}


@pytest.fixture()
def cams(base_doc: Dict[str, Any], control_dirs: Dict[str, Path]) -> Iterator[Tuple[Harness, Dict[str, Any]]]:
    model = _model(
        str(control_dirs["models"] / "demo-cnn.onnx"),
        control_dirs["data"] / "cams.jsonl",
        [_synthetic("a", 200), _synthetic("b", 100, 1)],
    )
    base_doc["models"] = [model]
    h = Harness(base_doc)
    yield h, model
    h.close()


def source_frames_out(h: Harness, source: str) -> int:
    sources = {s.id: s for s in h.daemon.snapshot(latency=False).models["cams"].sources}
    return sources[source].frames_out


def test_sources_are_added_removed_and_changed_in_place_without_a_gap_for_the_others(
    cams: Tuple[Harness, Dict[str, Any]], control_dirs: Dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    h, model = cams
    obtained: List[str] = []
    real_obtain = PlanManager.obtain

    def counting_obtain(self: PlanManager, *args: Any, **kwargs: Any) -> Any:
        obtained.append("plan")
        return real_obtain(self, *args, **kwargs)

    monkeypatch.setattr(PlanManager, "obtain", counting_obtain)
    time.sleep(0.3)
    pipeline = h.daemon.models.slots["cams"].pipeline
    assert pipeline is not None
    runner = pipeline.runner

    # Add c, remove b; a keeps going.
    step1 = dict(model, sources=[model["sources"][0], _synthetic("c", 50, 2)])
    with CounterSampler(lambda: source_frames_out(h, "a")) as sampler:
        result = _push(h, {"version": 2, "patch": {"models": [step1]}})
    assert result["status"] == "applied", result
    assert result["changes"] == {
        "added": [],
        "changed": [],
        "removed": [],
        "unchanged": [],
        "sources": {"cams": {"added": ["c"], "changed": [], "removed": ["b"]}},
    }
    assert sampler.longest_stall_s() < 0.25, sampler.samples
    time.sleep(0.5)
    state = h.daemon.snapshot().models["cams"]
    assert [s.id for s in state.sources] == ["a", "c"] and state.sources[1].frames_out > 0
    assert {s.state for s in state.sources} == {"live"}
    removed = pipeline.stats.counters()["sources"]["b"]
    assert removed["frames_in"] == removed["frames_out"] + sum(removed["dropped"].values()) > 0

    # Change a's rate; c keeps going, and a's numbering goes on where it was.
    before_change = pipeline.stats.counters()["sources"]["a"]["frames_in"]
    step2 = dict(step1, sources=[_synthetic("a", 100), step1["sources"][1]])
    with CounterSampler(lambda: source_frames_out(h, "c")) as sampler:
        result = _push(h, {"version": 3, "patch": {"models": [step2]}})
    assert result["status"] == "applied" and result["changes"]["sources"]["cams"]["changed"] == ["a"], result
    assert sampler.longest_stall_s() < 0.25, sampler.samples
    time.sleep(0.3)

    # The same pipeline, engine and plan throughout: nothing was rebuilt or reloaded.
    assert h.daemon.models.slots["cams"].pipeline is pipeline and pipeline.runner is runner
    assert obtained == [] and pipeline.state == "running"
    assert h.daemon.config.model("cams").sources[0].plugin.get("fps") == 100
    assert h.daemon.models.stop()
    records = [json.loads(line) for line in (control_dirs["data"] / "cams.jsonl").read_text().splitlines()]
    a_seqs = [r["seq"] for r in records if r["source"] == "a"]
    assert a_seqs == sorted(set(a_seqs)) and max(a_seqs) >= before_change
    assert {r["source"] for r in records} == {"a", "b", "c"}
    for source_id, counts in pipeline.stats.counters()["sources"].items():
        assert counts["frames_in"] == counts["frames_out"] + sum(counts["dropped"].values()), source_id
    # config/state carries each source's state and counters.
    state_doc = json.loads([p for t, p, *_ in h.published if t.endswith("/config/state")][-1])
    assert set(state_doc["models"]["cams"]["sources"]) == {"a", "c"}
    assert "source" not in state_doc["config"]["models"][0]  # no default single source beside the list


def test_a_source_that_cannot_open_rolls_the_push_back_and_the_model_serves_on(
    cams: Tuple[Harness, Dict[str, Any]], control_dirs: Dict[str, Path]
) -> None:
    h, model = cams
    empty = control_dirs["data"] / "empty"
    empty.mkdir()
    pipeline = h.daemon.models.slots["cams"].pipeline
    bad = dict(model, sources=[*model["sources"], {"id": "d", "type": "images", "path": str(empty)}])
    result = _push(h, {"version": 2, "patch": {"models": [bad]}})
    assert result["status"] == "rolled_back", result
    assert result["errors"][0].startswith("models.cams: ") and "no .jpg" in result["errors"][0]
    assert h.daemon.config.version == 1 and h.daemon.models.slots["cams"].pipeline is pipeline
    assert [s.id for s in h.daemon.snapshot().models["cams"].sources] == ["a", "b"]


def test_a_change_beyond_the_sources_rebuilds_the_model(cams: Tuple[Harness, Dict[str, Any]]) -> None:
    h, model = cams
    pipeline = h.daemon.models.slots["cams"].pipeline
    result = _push(h, {"version": 2, "patch": {"models": [dict(model, batch=2, sources=model["sources"][:1])]}})
    assert result["status"] == "applied" and result["changes"]["changed"] == ["cams"], result
    assert "sources" not in result["changes"]
    assert h.daemon.models.slots["cams"].pipeline is not pipeline


def test_a_pushed_source_path_is_confined_to_the_data_dirs(
    cams: Tuple[Harness, Dict[str, Any]], control_dirs: Dict[str, Path]
) -> None:
    h, model = cams
    outside = {"id": "x", "type": "images", "path": str(control_dirs["outside"] / "images")}
    result = _push(h, {"version": 2, "patch": {"models": [dict(model, sources=[*model["sources"], outside])]}})
    assert result["status"] == "rejected"
    assert any(e.startswith("models[0].sources[2].path: ") and "control.data_dirs" in e for e in result["errors"])
