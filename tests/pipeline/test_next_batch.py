"""The next batch taken and copied while the engine runs (edged/pipeline/next_batch.py):
on its own, and in a pipeline whose batch copy is slow."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Dict, List, Tuple

import numpy as np

from edged.backends.base import Runner, TensorSpec
from edged.backends.input_prefix import FRAME_INPUT
from edged.config import parse_config
from edged.pipeline.fair_queue import FairQueue
from edged.pipeline.frame import Frame
from edged.pipeline.model_pipeline import ModelPipeline
from edged.pipeline.next_batch import NextBatch, Prepared

_IMAGE = np.zeros((1, 1, 3), np.uint8)


def _lanes_with(count: int, lanes: str = "a") -> FairQueue:
    queue = FairQueue()
    for lane in lanes:
        queue.set_lane(lane, 64, live=True)
    for seq in range(count):
        frame = Frame(seq, _IMAGE, 0.0)
        frame.source = lanes[seq % len(lanes)]
        assert queue.put(frame.source, frame, threading.Event()) == []
    return queue


def _helper(queue: FairQueue, batch: int) -> Tuple[NextBatch, List[Tuple[List[Frame], int]], threading.Thread]:
    assembled: List[Tuple[List[Frame], int]] = []

    def assemble(frames: List[Frame], slot: int) -> Prepared:
        assembled.append((frames, slot))
        return frames, np.zeros(1)

    helper = NextBatch(queue, batch, assemble, threading.Event())
    thread = threading.Thread(target=helper.run, daemon=True)
    return helper, assembled, thread


def test_a_whole_queued_batch_is_taken_round_robin_into_the_spare_slot() -> None:
    queue = _lanes_with(6, lanes="ab")
    helper, assembled, thread = _helper(queue, batch=4)
    thread.start()
    helper.engine_starting(1)
    time.sleep(0.2)  # the engine call
    prepared = helper.collect()
    helper.stop()
    thread.join(2)
    assert prepared is not None and [f"{f.source}{f.seq}" for f in prepared[0]] == ["a0", "b1", "a2", "b3"]
    assert [slot for _, slot in assembled] == [1]
    assert queue.depth("a") == 1 and queue.depth("b") == 1  # the rest waits for the next take


def test_fewer_frames_than_a_batch_stay_queued_for_the_infer_thread() -> None:
    queue = _lanes_with(3)
    helper, assembled, thread = _helper(queue, batch=4)
    thread.start()
    helper.engine_starting(0)
    time.sleep(0.2)
    assert helper.collect() is None
    helper.stop()
    thread.join(2)
    assert assembled == [] and queue.depth("a") == 3


def test_a_request_not_begun_when_the_engine_returns_is_withdrawn() -> None:
    """The infer thread never waits for the helper to be scheduled."""
    queue = _lanes_with(8)
    helper, assembled, thread = _helper(queue, batch=4)
    helper.engine_starting(1)
    started = time.monotonic()
    assert helper.collect() is None  # the helper thread is not even running yet
    assert time.monotonic() - started < 1.0  # no wait for a helper that never ran
    thread.start()
    time.sleep(0.2)
    helper.stop()
    thread.join(2)
    assert assembled == [] and queue.depth("a") == 8


class _SlowEngine(Runner):
    """An engine call of ``call_s`` with the GIL released, as ONNX Runtime's; each call's
    start and end are kept."""

    def __init__(self, spec: TensorSpec, call_s: float) -> None:
        super().__init__()
        self.inputs = [spec]
        self.outputs = [TensorSpec("logits", (None, 4), "float32")]
        self._call_s = call_s
        self.calls: List[Tuple[float, float, int]] = []

    def _infer_impl(self, feeds: Any) -> Dict[str, np.ndarray]:
        start = time.monotonic()
        time.sleep(self._call_s)
        n = len(feeds[self.inputs[0].name])
        self.calls.append((start, time.monotonic(), n))
        return {"logits": np.zeros((n, 4), np.float32)}


def test_a_slow_batch_copy_runs_while_the_engine_does_and_every_frame_is_counted() -> None:
    """1080p frames, batches of 8: a 50 MB copy per batch. With the copy on the engine's
    path the engine would wait that long between calls; here it does not."""
    doc = {
        "device": {"id": "t"},
        "models": [
            {
                "name": "m",
                "path": "unused.onnx",
                "batch": 8,
                "max_wait_ms": 50,
                "queue_size": 32,
                "source": {"type": "synthetic", "fps": 0, "count": 240, "size": [1080, 1920]},
                "postprocess": {"type": "raw"},
                "sink": {"type": "null"},
            }
        ],
    }
    engine = _SlowEngine(TensorSpec(FRAME_INPUT, (None, 1080, 1920, 3), "uint8"), call_s=0.04)
    pipeline = ModelPipeline(parse_config(doc).models[0], engine)
    copies: List[float] = []
    batch = pipeline.tensors.batch

    def timed_batch(frames: List[Frame], engine_index: int, slot: int) -> np.ndarray:
        start = time.monotonic()
        tensor = batch(frames, engine_index, slot)
        copies.append(time.monotonic() - start)
        return tensor

    pipeline.tensors.batch = timed_batch  # type: ignore[method-assign]
    pipeline.start()
    assert pipeline.wait(timeout=60)
    pipeline.stop()
    counters = pipeline.stats.counters()
    assert counters["frames_in"] == 240 and counters["frames_out"] == 240 and not counters["dropped"]
    steady = engine.calls[2:-2]
    gaps = [steady[i + 1][0] - steady[i][1] for i in range(len(steady) - 1)]
    assert statistics.median(n for _, _, n in steady) == 8  # batches stay full
    copy = statistics.median(copies)
    assert copy > 0.002, f"the copy took {copy * 1000:.1f} ms: too fast to show anything"
    assert statistics.median(gaps) < copy / 2, (statistics.median(gaps), copy)
