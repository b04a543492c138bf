#!/usr/bin/env python3
"""Where edged's batch-1 throughput goes around the engine, on ONNX Runtime.

Two measurements, rounds alternating, medians with min and max:
  spin:  the engine alone in a tight loop, each setting in a fresh process: ONNX Runtime's
         default (pool threads spin on after a run), edged's (stop after each run, 200 us
         at most within one), each of those two alone, and no spinning;
  calls: the same runner (edged's options) alone, then inside edged's pipeline (synthetic
         source at the network size (--hw), top-5, null sink or --jsonl) with every engine call timed: mean and p99 call
         time, the time between calls, and the rates; at --batch above 1 also the median copy of
         the frames into the batch tensor and of the same copy repeated at once (warm frames;
         that second copy adds to the time between calls).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

_SPIN_CHILD = """
import sys, time, numpy as np, onnxruntime as ort
model, mode, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
so = ort.SessionOptions(); so.log_severity_level = 3
for part in mode.split("+"):
    if part == "none": so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif part == "stop": so.add_session_config_entry("session.force_spinning_stop", "1")
    elif part != "unbounded": so.add_session_config_entry("session.intra_op.spin_duration_us", part)
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]; x = {i.name: np.zeros([1] + [d if isinstance(d, int) else 1 for d in i.shape[1:]], np.float32)}
for _ in range(5): s.run(None, x)
t = time.perf_counter(); n = 0
while time.perf_counter() - t < seconds: s.run(None, x); n += 1
print(n / (time.perf_counter() - t))
"""


def spin(model: str, settings: List[str], rounds: int, seconds: float) -> Dict[str, List[float]]:
    rates: Dict[str, List[float]] = {mode: [] for mode in settings}
    for _ in range(rounds):
        for mode in settings:
            command = [sys.executable, "-c", _SPIN_CHILD, model, mode, str(seconds)]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            rates[mode].append(float(out.stdout.strip().splitlines()[-1]))
    return rates


def calls(model: str, seconds: float, sink: str, hw: List[int], batch: int = 1) -> Dict[str, float]:
    from edged.backends import BuildOptions, get_backend
    from edged.config import parse_config
    from edged.model_loading import folding_for
    from edged.pipeline.model_pipeline import ModelPipeline
    from tools.bench_pipeline import TimedRunner, model_doc

    config = parse_config({"device": {"id": "bench"}, "models": [model_doc(model, batch, 0, 0, hw, sink, instances=1)]})
    model_config = config.models[0]
    backend = get_backend("onnxruntime")
    options = BuildOptions(batch=batch, input_prefix=folding_for(model_config).prefix)
    runner = backend.load_plan(backend.build_plan(model, options).plan, options)
    spec = runner.inputs[0]
    feeds = {spec.name: np.zeros([batch, *[d or 1 for d in spec.shape[1:]]], dtype=spec.dtype)}
    alone: List[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        runner.infer(feeds)
        alone.append((time.perf_counter() - start) * 1000.0)
    timed = TimedRunner(runner)
    pipeline = ModelPipeline(model_config, timed)
    copies: List[Tuple[float, float]] = []
    batch = pipeline.tensors.batch

    def copy_timed(frames: List[Any], engine: int, slot: int) -> np.ndarray:
        """Times each batch copy, then the same copy again: the second reads warm frames."""
        start = time.perf_counter()
        tensor = batch(frames, engine, slot)
        copied = time.perf_counter()
        batch(frames, engine, slot)
        copies.append(((copied - start) * 1000.0, (time.perf_counter() - copied) * 1000.0))
        return tensor

    pipeline.tensors.batch = copy_timed  # type: ignore[method-assign]
    pipeline.start()
    time.sleep(seconds + 1.0)
    pipeline.stop()
    frames_per_call = int(pipeline.stats.counters()["frames_out"]) / max(1, len(timed.calls))
    kept = timed.calls[len(timed.calls) // 5 :]  # the first fifth is warm-up
    inside = [(e - s) * 1000.0 for s, e in kept]
    gaps = [(kept[i + 1][0] - kept[i][1]) * 1000.0 for i in range(len(kept) - 1)]

    def p99(values: List[float]) -> float:
        return sorted(values)[int(len(values) * 0.99)]

    return {
        "alone_mean_ms": statistics.mean(alone),
        "alone_p99_ms": p99(alone),
        "inside_mean_ms": statistics.mean(inside),
        "inside_p99_ms": p99(inside),
        "gap_mean_ms": statistics.mean(gaps),
        "alone_rate": 1000.0 / statistics.mean(alone),
        "inside_rate": len(kept) / (kept[-1][1] - kept[0][0]),
        "inside_frames_per_call": frames_per_call,
        "batch_copy_ms": statistics.median(c for c, _ in copies[len(copies) // 5 :]),
        "batch_copy_again_ms": statistics.median(a for _, a in copies[len(copies) // 5 :]),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "var/bench/mobilenetv2-shaped.onnx"))
    parser.add_argument("--hw", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jsonl", metavar="FILE", help="a JSON-lines sink writing to FILE instead of the null sink")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--spin",
        nargs="*",
        default=["unbounded", "stop+200", "200", "stop", "none"],
        help="unbounded, none, stop (after each run), µs (within a run), or stop+µs (edged's); none given: skip",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch of the timed engine calls")
    args = parser.parse_args(argv)
    if not Path(args.model).exists():
        subprocess.run([sys.executable, str(REPO / "tools/make_bench_model.py"), "--out", args.model], check=True)
    for mode, rates in spin(args.model, args.spin, args.rounds, args.seconds).items():
        print(f"engine alone, spinning {mode}: {statistics.median(rates):.1f}/s [{min(rates):.1f}..{max(rates):.1f}]")
    for _ in range(args.rounds):
        c = calls(args.model, args.seconds, args.jsonl or "", args.hw, args.batch)
        print(
            f"engine call alone {c['alone_mean_ms']:.2f} ms (p99 {c['alone_p99_ms']:.2f}), "
            f"{c['alone_rate']:.1f} calls/s; "
            f"inside edged {c['inside_mean_ms']:.2f} ms (p99 {c['inside_p99_ms']:.2f}) + {c['gap_mean_ms']:.3f} ms "
            f"between calls, {c['inside_rate']:.1f} calls/s of {c['inside_frames_per_call']:.2f} frames "
            f"({c['inside_rate'] / c['alone_rate']:.3f}); the batch copy took {c['batch_copy_ms']:.3f} ms "
            f"(the same copy again {c['batch_copy_again_ms']:.3f} ms)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
