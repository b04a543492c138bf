"""The batching policy across sources (edged/pipeline/fair_queue.py), on its own and in a
saturated model served by ONNX Runtime."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from edged.config import parse_config
from edged.daemon import Daemon
from edged.pipeline.fair_queue import FairQueue
from edged.pipeline.frame import Frame

_IMAGE = np.zeros((1, 1, 3), np.uint8)


def _frame(source: str, seq: int) -> Frame:
    frame = Frame(seq, _IMAGE, 0.0)
    frame.source = source
    return frame


def _fill(lanes: FairQueue, source: str, count: int) -> None:
    for seq in range(count):
        assert lanes.put(source, _frame(source, seq), threading.Event()) == []


def _ids(frames: List[Frame]) -> List[str]:
    return [f"{f.source}{f.seq}" for f in frames]


def test_batches_take_one_frame_per_source_per_turn_and_rotate_the_first() -> None:
    lanes = FairQueue()
    for source in "abc":
        lanes.set_lane(source, 16, live=True)
    _fill(lanes, "a", 10)
    _fill(lanes, "b", 1)
    _fill(lanes, "c", 3)
    assert _ids(lanes.take(4, 0)) == ["a0", "b0", "c0", "a1"]
    # The next batch starts after the last lane served (b), and b has nothing left.
    assert _ids(lanes.take(4, 0)) == ["c1", "a2", "c2", "a3"]
    assert _ids(lanes.take(4, 0)) == ["a4", "a5", "a6", "a7"]


def test_a_full_live_lane_drops_its_own_oldest_and_never_another_sources() -> None:
    lanes = FairQueue()
    lanes.set_lane("fast", 2, live=True)
    lanes.set_lane("slow", 2, live=True)
    _fill(lanes, "slow", 1)
    dropped = [f for seq in range(5) for f in lanes.put("fast", _frame("fast", seq), threading.Event())]
    assert _ids(dropped) == ["fast0", "fast1", "fast2"]
    assert lanes.depth("slow") == 1 and lanes.depth("fast") == 2


def test_a_full_file_lane_waits_for_room_and_gives_the_frame_back_on_abort() -> None:
    lanes = FairQueue()
    lanes.set_lane("file", 1, live=False)
    _fill(lanes, "file", 1)
    abort = threading.Event()
    threading.Timer(0.2, abort.set).start()
    started = time.monotonic()
    late = _frame("file", 1)
    assert lanes.put("file", late, abort) == [late]
    assert time.monotonic() - started >= 0.15


def test_a_file_lane_waiting_for_room_refills_in_order_as_the_consumer_takes() -> None:
    lanes = FairQueue()
    lanes.set_lane("file", 4, live=False)
    reader = threading.Thread(target=_fill, args=(lanes, "file", 12))
    reader.start()
    taken: List[Frame] = []
    deadline = time.monotonic() + 10
    while len(taken) < 12 and time.monotonic() < deadline:
        taken += lanes.take(1, 0, first_wait_s=0.5)
    reader.join(5)
    assert not reader.is_alive()
    assert _ids(taken) == [f"file{seq}" for seq in range(12)]


def test_a_waiting_consumer_wakes_for_its_first_frame_and_for_a_full_batch() -> None:
    lanes = FairQueue()
    lanes.set_lane("cam", 8, live=True)

    def feed(count: int) -> None:
        for seq in range(count):
            time.sleep(0.02)
            lanes.put("cam", _frame("cam", seq), threading.Event())

    threading.Thread(target=feed, args=(1,)).start()
    started = time.monotonic()
    assert _ids(lanes.take(4, 0, first_wait_s=5.0)) == ["cam0"]
    threading.Thread(target=feed, args=(4,)).start()
    assert _ids(lanes.take(4, 5.0, first_wait_s=5.0)) == ["cam0", "cam1", "cam2", "cam3"]
    assert time.monotonic() - started < 4.0  # neither waited out its timeout


def test_a_closed_lane_is_served_to_the_end_then_goes() -> None:
    lanes = FairQueue()
    lanes.set_lane("a", 4, live=True)
    lanes.set_lane("b", 4, live=True)
    _fill(lanes, "a", 2)
    _fill(lanes, "b", 2)
    lanes.close_lane("a")
    refused = _frame("a", 9)
    assert lanes.put("a", refused, threading.Event()) == [refused]
    assert sorted(_ids(lanes.take(8, 0))) == ["a0", "a1", "b0", "b1"]
    lanes.set_lane("a", 4, live=True)  # the id may come back later, as a new lane
    _fill(lanes, "a", 1)
    assert _ids(lanes.take(8, 0)) == ["a0"]


def _model(bench_model: Path, sources: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "name": "detector",
        "path": str(bench_model),
        "threads": 1,
        "batch": 4,
        "max_wait_ms": 5,
        "sources": sources,
        "postprocess": {"type": "raw"},
        "sink": {"type": "null"},
    }


@pytest.fixture(scope="module")
def bench_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNetV2-shaped model: about 18 ms a frame on one CPU thread here, so a 200 fps
    source saturates it."""
    import make_bench_model

    out = tmp_path_factory.mktemp("bench") / "mobilenetv2-shaped.onnx"
    assert make_bench_model.main(["--out", str(out)]) == 0
    return out


def test_a_5_fps_source_loses_no_frame_beside_a_fast_one_in_a_saturated_model(
    bench_model: Path, tmp_path: Path
) -> None:
    sources = [
        # 1,000 fps: more than the model serves on any machine these tests run on, however
        # fast preprocessing gets (200 fps stopped saturating it once it moved into the plan).
        {"id": "fast", "type": "synthetic", "fps": 1000, "queue_size": 8},
        {"id": "slow", "type": "synthetic", "fps": 5, "queue_size": 8, "seed": 1},
    ]
    doc = {
        "device": {"id": "fair"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "models": [_model(bench_model, sources)],
    }
    daemon = Daemon(parse_config(doc))
    daemon.models.start()
    assert daemon.models.wait_started(60)
    pipeline = daemon.models.slots["detector"].pipeline
    assert pipeline is not None
    time.sleep(6)
    assert daemon.models.stop()
    per_source = pipeline.stats.counters()["sources"]
    fast, slow = per_source["fast"], per_source["slow"]
    # The model was saturated: the fast source lost frames, to its own lane only.
    assert fast["dropped"].get("queue_full", 0) > fast["frames_in"] / 4, fast
    assert fast["frames_in"] == fast["frames_out"] + sum(fast["dropped"].values())
    # The slow source lost none.
    assert slow["frames_in"] >= 25 and slow["dropped"] == {}, slow
    assert slow["frames_out"] == slow["frames_in"], slow
