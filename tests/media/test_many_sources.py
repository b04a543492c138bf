"""Eight sources of every kind feeding one model: one engine, every frame accounted for per
source, results tagged with their source; a stream outage costs the other sources nothing."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List

import pytest

from edged.backends.onnxruntime.backend import OnnxRuntimeBackend
from edged.config import parse_config
from edged.daemon import Daemon
from edged.telemetry.snapshot import Snapshotter
from tests.media.test_gst_file import write_h264_mp4
from tests.media.test_rtsp import _serve, _wait
from tests.mqtt.broker import free_port

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "edged/telemetry/schema.json").read_text())


def _doc(tmp_path: Path, demo_assets: Path, sources: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "device": {"id": "many"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "models": [
            {
                "name": "shared",
                "path": str(demo_assets / "demo-cnn.onnx"),
                "threads": 1,
                "batch": 8,
                "max_wait_ms": 5,
                "preprocess": {"size": [64, 64]},
                "sources": sources,
                "sink": {"type": "jsonl", "path": str(tmp_path / "results.jsonl"), "flush_every": 1},
            }
        ],
    }


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    video = tmp_path / "clip.mp4"
    write_h264_mp4(video, frames=60)
    return video


def _records(tmp_path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]


def test_eight_sources_share_one_engine_and_every_frame_is_accounted_for_per_source(
    tmp_path: Path, demo_assets: Path, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: List[str] = []
    real_load = OnnxRuntimeBackend.load_plan

    def counting_load(self: OnnxRuntimeBackend, plan: bytes, options: Any) -> Any:
        loads.append(options.device)
        return real_load(self, plan, options)

    monkeypatch.setattr(OnnxRuntimeBackend, "load_plan", counting_load)
    port = free_port()
    images = demo_assets / "images"
    sources = [
        {"id": "syn30", "type": "synthetic", "fps": 30, "size": [64, 64]},
        {"id": "syn10", "type": "synthetic", "fps": 10, "size": [96, 128], "seed": 2},
        {"id": "burst", "type": "synthetic", "fps": 0, "count": 60, "size": [64, 64], "seed": 3},
        {"id": "img", "type": "images", "path": str(images), "fps": 20},
        {"id": "img-once", "type": "images", "path": str(images), "loop": False},
        {"id": "clip", "type": "file", "path": str(clip), "loop": True, "fps": 15},
        {"id": "clip-once", "type": "file", "path": str(clip)},
        {"id": "cam", "type": "rtsp", "url": f"rtsp://127.0.0.1:{port}/cam", "latency_ms": 0, "fps": 10},
    ]
    server = _serve(port)
    daemon = Daemon(parse_config(_doc(tmp_path, demo_assets, sources)))
    started = time.time()
    try:
        daemon.models.start()
        assert daemon.models.wait_started(60)
        pipeline = daemon.models.slots["shared"].pipeline
        assert pipeline is not None
        per_source = lambda: pipeline.stats.counters()["sources"]  # noqa: E731
        assert _wait(lambda: per_source().get("cam", {}).get("frames_out", 0) >= 20, 30), per_source()
        states = lambda: {s["id"]: s["state"] for s in pipeline.source_status()}  # noqa: E731
        assert _wait(lambda: states()["burst"] == states()["clip-once"] == states()["img-once"] == "finished", 30)
        running = daemon.snapshot().models["shared"]
        telemetry = Snapshotter("many", None, None, 30).snapshot(daemon.snapshot().models)
        assert daemon.models.stop()
    finally:
        server.kill()
        server.wait()
    # One engine instance on one device, loaded once, fed by all eight sources.
    assert loads == ["cpu"] and len(pipeline.runners) == 1 and list(daemon.models.slots) == ["shared"]
    assert [s.id for s in running.sources] == [s["id"] for s in sources]
    assert {s.id: s.state for s in running.sources}["burst"] == "finished"
    assert {s.id: s.state for s in running.sources}["cam"] == "live"
    assert set(telemetry["models"]["shared"]["sources"]) == {s["id"] for s in sources}
    import jsonschema

    jsonschema.validate(telemetry, SCHEMA)

    counters = pipeline.stats.counters()
    records = _records(tmp_path)
    by_source: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_source[record["source"]].append(record)
    assert set(by_source) == {s["id"] for s in sources}
    for source_id, counts in counters["sources"].items():
        # Every frame accounted for: in = out + dropped (with a reason), for each source.
        assert counts["frames_in"] == counts["frames_out"] + sum(counts["dropped"].values()), (source_id, counts)
        mine = by_source[source_id]
        assert len(mine) == counts["frames_out"], source_id
        seqs = [r["seq"] for r in mine]
        assert seqs == sorted(set(seqs)) and seqs[-1] < counts["frames_in"], source_id
        assert all(started <= r["capture_ts"] <= r["ts"] for r in mine), source_id
    assert counters["frames_in"] == sum(c["frames_in"] for c in counters["sources"].values())
    # Finite sources that wait for room lose nothing and keep their order.
    assert [r["seq"] for r in by_source["burst"]] == list(range(60))
    assert [r["seq"] for r in by_source["clip-once"]] == list(range(60))
    names = sorted(p.name for p in images.iterdir())
    assert sorted(r["origin"] for r in by_source["img-once"]) == names
    assert {r["origin"] for r in by_source["img"]} <= set(names)
    assert {r["origin"] for r in by_source["syn30"]} == {"synthetic"}
    assert {r["origin"] for r in by_source["clip"]} == {"file"} and {r["origin"] for r in by_source["cam"]} == {"rtsp"}
    # The 30 fps stream was held to 10 fps: the rest was dropped as rate_limit.
    assert counters["sources"]["cam"]["dropped"].get("rate_limit", 0) >= counters["sources"]["cam"]["frames_out"]


def _rates(records: List[Dict[str, Any]], start: float, end: float) -> Dict[str, float]:
    counts: Dict[str, int] = defaultdict(int)
    for record in records:
        if start <= record["capture_ts"] < end:
            counts[record["source"]] += 1
    return {source: n / (end - start) for source, n in counts.items()}


@pytest.mark.slow
def test_a_40_s_stream_outage_leaves_the_other_seven_sources_at_their_rate(
    tmp_path: Path, demo_assets: Path, clip: Path
) -> None:
    port = free_port()
    images = demo_assets / "images"
    rates = {"syn30": 30, "syn10": 10, "syn20": 20, "img": 20, "img5": 5, "clip": 15, "clip25": 25}
    sources = [
        {"id": "syn30", "type": "synthetic", "fps": 30, "size": [64, 64]},
        {"id": "syn10", "type": "synthetic", "fps": 10, "size": [96, 128], "seed": 2},
        {"id": "syn20", "type": "synthetic", "fps": 20, "size": [64, 64], "seed": 3},
        {"id": "img", "type": "images", "path": str(images), "fps": 20},
        {"id": "img5", "type": "images", "path": str(images), "fps": 5},
        {"id": "clip", "type": "file", "path": str(clip), "loop": True, "fps": 15},
        {"id": "clip25", "type": "file", "path": str(clip), "loop": True, "fps": 25},
        {"id": "cam", "type": "rtsp", "url": f"rtsp://127.0.0.1:{port}/cam", "latency_ms": 0, "retry_max_s": 1},
    ]
    server = _serve(port)
    daemon = Daemon(parse_config(_doc(tmp_path, demo_assets, sources)))
    runner = threading.Thread(target=daemon.run, kwargs={"duration_s": 150}, daemon=True)
    runner.start()
    try:
        assert daemon.models.wait_started(60)
        pipeline = daemon.models.slots["shared"].pipeline
        assert pipeline is not None
        cam_out = lambda: pipeline.stats.counters()["sources"].get("cam", {}).get("frames_out", 0)  # noqa: E731
        assert _wait(lambda: cam_out() > 30, 30)
        time.sleep(10)
        server.kill()
        server.wait()
        outage_start = time.time()
        time.sleep(40)
        outage_end = time.time()
        cam = {s.id: s for s in daemon.snapshot().models["shared"].sources}["cam"]
        assert cam.state == "reconnecting" and cam.retry_in_s is not None and cam.error, cam
        assert cam.detail["outages"] == 1
    finally:
        daemon.stop_event.set()
        runner.join(15)
        server.kill()
        server.wait()
    records = _records(tmp_path)
    during = _rates(records, outage_start + 1, outage_end)
    for source_id, fps in rates.items():
        assert abs(during.get(source_id, 0.0) - fps) <= 0.1 * fps, (source_id, during)
    counters = pipeline.stats.counters()["sources"]
    for source_id, counts in counters.items():
        assert counts["frames_in"] == counts["frames_out"] + sum(counts["dropped"].values()), (source_id, counts)
        if source_id != "cam":
            assert counts["dropped"] == {}, (source_id, counts)
