"""Who writes a batch's results: the output thread when frames wait for the engine, the
infer thread itself when none does (no wake-up added to the frame's latency), in the order
the engine produced them either way; and a quiet spell flushes the sink, so a camera gone
quiet leaves none of its last results unwritten (edged/pipeline/hand_off.py). Real ONNX
Runtime serves the demo model."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from edged.backends import get_backend
from edged.config import parse_config
from edged.model_loading import build_options
from edged.pipeline.model_pipeline import ModelPipeline


def _pipeline(demo_config: Dict[str, Any], source: Dict[str, Any]) -> ModelPipeline:
    demo_config["models"][0].update(batch=1, max_wait_ms=0, source=dict(source, type="synthetic", size=[64, 64]))
    config = parse_config(demo_config).models[0]
    runner = get_backend("onnxruntime").load_model(config.path, build_options(config))
    return ModelPipeline(config, runner)


def _writers(pipeline: ModelPipeline) -> List[str]:
    names: List[str] = []
    pipeline.results_hook = lambda record: names.append(threading.current_thread().name)
    return names


def test_a_quiet_engine_writes_its_own_results_and_a_quiet_spell_flushes_them(
    demo_config: Dict[str, Any], tmp_path: Path
) -> None:
    pipeline = _pipeline(demo_config, {"fps": 25, "count": 0})  # a camera, flush_every 64
    writers = _writers(pipeline)
    pipeline.start()
    try:
        time.sleep(1.0)
        # Fewer results than a flush's worth, yet on disk: the quiet spells between frames
        # flushed them.
        lines = (tmp_path / "out.jsonl").read_text().splitlines()
        assert 0 < len(writers) < 64 and len(lines) >= len(writers) - 2, (len(lines), len(writers))
    finally:
        pipeline.stop()
    infer = sum(name == "edged-demo-infer" for name in writers)
    assert infer >= 0.9 * len(writers), writers


def test_a_busy_engine_hands_its_results_over_in_order(demo_config: Dict[str, Any], tmp_path: Path) -> None:
    pipeline = _pipeline(demo_config, {"fps": 0, "count": 400})  # a file: frames always wait
    writers = _writers(pipeline)
    pipeline.start()
    assert pipeline.wait(timeout=60)
    pipeline.stop()
    counters = pipeline.stats.counters()
    assert counters["frames_in"] == counters["frames_out"] == 400
    assert "edged-demo-output" in writers, set(writers)
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert seqs == list(range(400))  # one engine: whoever wrote, in the engine's order
