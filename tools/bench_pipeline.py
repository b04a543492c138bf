#!/usr/bin/env python3
"""Pipeline efficiency: how much of the raw backend's throughput edged's pipeline delivers.

In one run, on one machine, with one model and batch size:
  (a) raw: the backend alone in a tight loop on preallocated inputs (edged.bench.measure);
  (b) pipeline: source -> preprocess -> batch -> infer -> postprocess -> sink at saturation.
Rounds alternate (a) and (b) so drifting machine load hits both alike; medians are reported.
Also: end-to-end p99 latency minus the raw p99 at 50% of the raw saturation rate, and the
daemon's resident memory beyond a bare process holding the same ONNX Runtime session.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edged.backends import BuildOptions, get_backend  # noqa: E402
from edged.bench import measure, summarize  # noqa: E402
from edged.config import parse_config  # noqa: E402
from edged.pipeline.model_pipeline import ModelPipeline  # noqa: E402


def model_doc(path: str, batch: int, fps: float, threads: int, hw: List[int]) -> Dict[str, Any]:
    return {
        "name": "bench",
        "path": path,
        "threads": threads,
        "batch": batch,
        "max_wait_ms": 2,
        "queue_size": max(16, 4 * batch),
        "source": {"type": "synthetic", "fps": fps, "size": hw},
        "preprocess": {"size": hw, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "postprocess": {"type": "classify", "top_k": 5},
        "sink": {"type": "null"},
    }


def run_pipeline(doc: Dict[str, Any], warmup_s: float, duration_s: float) -> Dict[str, Any]:
    config = parse_config({"device": {"id": "bench"}, "models": [doc]}).models[0]
    backend = get_backend("onnxruntime")
    options = BuildOptions(batch=config.batch, threads=config.threads)
    pipeline = ModelPipeline(config, backend.load_plan(backend.build_plan(config.path, options).plan, options))
    pipeline.start()
    time.sleep(warmup_s)
    out0 = pipeline.stats.counters()["frames_out"]
    t0 = time.monotonic()
    time.sleep(duration_s)
    out1 = pipeline.stats.counters()["frames_out"]
    t1 = time.monotonic()
    e2e = pipeline.stats.latency["e2e"].snapshot()
    pipeline.stop()
    counters = pipeline.stats.counters()
    return {
        "throughput_ips": (int(out1) - int(out0)) / (t1 - t0),
        "e2e_p99_ms": e2e.percentile(99),
        "dropped": counters["dropped"],
    }


def run_raw(
    path: str, batch: int, threads: int, warmup_s: float, duration_s: float, rate_hz: float = 0.0
) -> Dict[str, Any]:
    backend = get_backend("onnxruntime")
    options = BuildOptions(batch=batch, threads=threads)
    runner = backend.load_plan(backend.build_plan(path, options).plan, options)
    try:
        result = measure(runner, batch, warmup_s, duration_s, rate_hz=rate_hz)
    finally:
        runner.close()
    return {"throughput_ips": result["throughput_ips"], "p99_ms": summarize(result["samples_ms"])["p99"]}


def throughput_ratio(path: str, batch: int, threads: int, rounds: int, seconds: float, hw: List[int]) -> Dict[str, Any]:
    raw, pipe = [], []
    for _ in range(rounds):
        raw.append(run_raw(path, batch, threads, 1.0, seconds)["throughput_ips"])
        pipe.append(run_pipeline(model_doc(path, batch, 0, threads, hw), 1.0, seconds)["throughput_ips"])
    raw_median, pipe_median = statistics.median(raw), statistics.median(pipe)
    return {
        "batch": batch,
        "raw_ips": raw,
        "pipeline_ips": pipe,
        "raw_median_ips": raw_median,
        "pipeline_median_ips": pipe_median,
        "ratio": pipe_median / raw_median,
    }


def added_latency(path: str, threads: int, saturation_ips: float, seconds: float, hw: List[int]) -> Dict[str, Any]:
    rate = 0.5 * saturation_ips
    raw = run_raw(path, 1, threads, 1.0, seconds, rate_hz=rate)
    doc = model_doc(path, 1, rate, threads, hw)
    doc["max_wait_ms"] = 0
    pipe = run_pipeline(doc, 1.0, seconds)
    return {
        "rate_hz": rate,
        "raw_p99_ms": raw["p99_ms"],
        "pipeline_e2e_p99_ms": pipe["e2e_p99_ms"],
        "added_p99_ms": pipe["e2e_p99_ms"] - raw["p99_ms"],
    }


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


_BASELINE = textwrap.dedent(
    """
    import sys, time, numpy as np, onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = int(sys.argv[2])
    s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
    x = np.zeros([1] + [d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape[1:]], np.float32)
    end = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < end:
        s.run(None, {s.get_inputs()[0].name: x}); time.sleep(1 / 30)
    """
)


def memory_beyond_backend(path: str, threads: int, hw: List[int], seconds: float = 6.0) -> Dict[str, float]:
    """Peak RSS of `edged run` serving the model minus a bare process running the same session."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edged.yaml"
        doc = {
            "device": {"id": "bench"},
            "plans": {"cache_dir": str(Path(tmp) / "plans")},
            "telemetry": {"period_s": 1},
        }
        doc["models"] = [model_doc(path, 1, 30, threads, hw)]
        config.write_text(json.dumps(doc))
        peaks = {}
        for name, cmd in (
            ("backend_only", [sys.executable, "-c", _BASELINE, path, str(threads), str(seconds)]),
            ("daemon", [sys.executable, "-m", "edged", "run", "--config", str(config), "--duration", str(seconds)]),
        ):
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO))
            peak = 0.0
            while proc.poll() is None:
                try:
                    peak = max(peak, _rss_mb(proc.pid))
                except (OSError, RuntimeError):
                    break
                time.sleep(0.2)
            proc.wait()
            peaks[name] = peak
    return {
        "backend_only_rss_mb": peaks["backend_only"],
        "daemon_rss_mb": peaks["daemon"],
        "beyond_backend_mb": peaks["daemon"] - peaks["backend_only"],
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "var/bench/mobilenetv2-shaped.onnx"))
    parser.add_argument("--hw", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement seconds per round")
    parser.add_argument("--memory-seconds", type=float, default=6.0, help="run time of each memory probe")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not Path(args.model).exists():
        subprocess.run([sys.executable, str(REPO / "tools/make_bench_model.py"), "--out", args.model], check=True)
    report: Dict[str, Any] = {"model": args.model, "cpus": os.cpu_count(), "threads": args.threads, "throughput": []}
    for batch in args.batches:
        row = throughput_ratio(args.model, batch, args.threads, args.rounds, args.seconds, args.hw)
        report["throughput"].append(row)
        print(
            f"batch {batch}: raw {row['raw_median_ips']:.1f}/s "
            f"pipeline {row['pipeline_median_ips']:.1f}/s ratio {row['ratio']:.3f}",
            flush=True,
        )
    batch1 = next((r for r in report["throughput"] if r["batch"] == 1), report["throughput"][0])
    report["latency"] = added_latency(args.model, args.threads, batch1["raw_median_ips"], args.seconds * 2, args.hw)
    lat = report["latency"]
    print(
        f"at {lat['rate_hz']:.1f}/s: raw p99 {lat['raw_p99_ms']:.2f} ms, "
        f"pipeline e2e p99 {lat['pipeline_e2e_p99_ms']:.2f} ms, added {lat['added_p99_ms']:.2f} ms",
        flush=True,
    )
    report["memory"] = memory_beyond_backend(args.model, args.threads, args.hw, args.memory_seconds)
    mem = report["memory"]
    print(
        f"memory: daemon {mem['daemon_rss_mb']:.0f} MB, backend alone {mem['backend_only_rss_mb']:.0f} MB, "
        f"beyond {mem['beyond_backend_mb']:.0f} MB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
