#!/usr/bin/env python3
"""Pipeline efficiency: how much of the raw backend's throughput edged's pipeline delivers.

In one run, on one machine, with one model, per batch size, rounds alternating:
  (a) engine: the backend alone in a tight loop on prepared float inputs (edged.bench.measure);
  (b) edged: source -> preprocess -> batch -> infer -> postprocess -> JSON-lines sink, with
      the preprocessing folded into the plan where edged folds it (the default);
  (c) peer: tools/peer_one_loop.py, the one-loop script a user would write;
  (d) ceiling: edged with a null engine (a runner returning a fixed output), and the
      process CPU it spends per frame.
Medians with min and max; ratios b/a and b/c. Also: end-to-end p99 latency minus the raw
p99 at half the raw saturation rate, and the daemon's resident memory beyond a bare process
holding the same ONNX Runtime session.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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

import numpy as np  # noqa: E402

from edged.backends import BuildOptions, Runner, TensorSpec, get_backend  # noqa: E402
from edged.backends.input_prefix import FRAME_INPUT, InputPrefix  # noqa: E402
from edged.bench import measure, summarize  # noqa: E402
from edged.config import parse_config  # noqa: E402
from edged.model_loading import folding_for  # noqa: E402
from edged.pipeline.model_pipeline import ModelPipeline  # noqa: E402
from edged.pipeline.stats import LatencyHistogram  # noqa: E402
from tools.peer_one_loop import run as run_peer  # noqa: E402


def model_doc(
    path: str, batch: int, fps: float, threads: int, hw: List[int], sink: str, fold: bool = True
) -> Dict[str, Any]:
    return {
        "name": "bench",
        "path": path,
        "threads": threads,
        "batch": batch,
        "max_wait_ms": 2,
        "queue_size": max(16, 4 * batch),
        "source": {"type": "synthetic", "fps": fps, "size": hw},
        "preprocess": {"size": hw, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "fold": fold},
        "postprocess": {"type": "classify", "top_k": 5},
        "sink": {"type": "jsonl", "path": sink} if sink else {"type": "null"},
    }


class NullRunner(Runner):
    """An engine that costs nothing: a fixed output for any batch, so the pipeline's own cost shows."""

    def __init__(self, spec: TensorSpec, classes: int = 1000, capacity: int = 64) -> None:
        super().__init__()
        self.inputs = [spec]
        self.outputs = [TensorSpec("logits", (None, classes), "float32")]
        self._fixed = np.random.default_rng(0).standard_normal((capacity, classes)).astype(np.float32)

    def _infer_impl(self, feeds: Any) -> Dict[str, np.ndarray]:
        return {"logits": self._fixed[: len(feeds[self.inputs[0].name])]}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _since(now: LatencyHistogram, before: LatencyHistogram) -> LatencyHistogram:
    """The latencies recorded between two snapshots: warm-up (the engine's first runs, the
    queue filling) stays out of the measured percentiles."""
    window = LatencyHistogram()
    window.counts = [a - b for a, b in zip(now.counts, before.counts)]
    window.count, window.total_ms, window.max_ms = now.count - before.count, now.total_ms - before.total_ms, now.max_ms
    return window


def run_pipeline(
    doc: Dict[str, Any], warmup_s: float, duration_s: float, runner: Optional[Runner] = None
) -> Dict[str, Any]:
    config = parse_config({"device": {"id": "bench"}, "models": [doc]}).models[0]
    if runner is None:
        backend = get_backend("onnxruntime")
        options = BuildOptions(batch=config.batch, threads=config.threads, input_prefix=folding_for(config).prefix)
        runner = backend.load_plan(backend.build_plan(config.path, options).plan, options)
    pipeline = ModelPipeline(config, runner)
    pipeline.start()
    time.sleep(warmup_s)
    out0, cpu0 = pipeline.stats.counters()["frames_out"], _cpu_s()
    warm = pipeline.stats.latency["e2e"].snapshot()
    t0 = time.monotonic()
    time.sleep(duration_s)
    out1, cpu1 = pipeline.stats.counters()["frames_out"], _cpu_s()
    t1 = time.monotonic()
    e2e = _since(pipeline.stats.latency["e2e"].snapshot(), warm)
    pipeline.stop()
    frames = int(out1) - int(out0)
    return {
        "throughput_ips": frames / (t1 - t0),
        "cpu_us_per_frame": (cpu1 - cpu0) / max(frames, 1) * 1e6,
        "e2e_p99_ms": e2e.percentile(99),
        "folded": runner.inputs[0].name == FRAME_INPUT,
    }


def run_raw(
    path: str,
    batch: int,
    threads: int,
    warmup_s: float,
    duration_s: float,
    rate_hz: float = 0.0,
    prefix: Optional[InputPrefix] = None,
) -> Dict[str, Any]:
    backend = get_backend("onnxruntime")
    options = BuildOptions(batch=batch, threads=threads, input_prefix=prefix)
    runner = backend.load_plan(backend.build_plan(path, options).plan, options)
    try:
        result = measure(runner, batch, warmup_s, duration_s, rate_hz=rate_hz)
    finally:
        runner.close()
    return {"throughput_ips": result["throughput_ips"], "p99_ms": summarize(result["samples_ms"])["p99"]}


def spread(values: List[float]) -> Dict[str, Any]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "rounds": values}


def throughput_ratio(
    path: str, batch: int, threads: int, rounds: int, seconds: float, hw: List[int], sink: str
) -> Dict[str, Any]:
    raw, raw_prefix, pipe, pipe_host, peer, null, null_cpu = [], [], [], [], [], [], []
    frame_spec = TensorSpec(FRAME_INPUT, (None, hw[0], hw[1], 3), "uint8")
    doc = model_doc(path, batch, 0, threads, hw, sink)
    prefix = folding_for(parse_config({"device": {"id": "bench"}, "models": [doc]}).models[0]).prefix
    for _ in range(rounds):
        raw.append(run_raw(path, batch, threads, 1.0, seconds)["throughput_ips"])
        pipe.append(run_pipeline(doc, 1.0, seconds)["throughput_ips"])
        if prefix is not None:  # the engine with the prefix on uint8 frames; edged with host preprocessing
            raw_prefix.append(run_raw(path, batch, threads, 1.0, seconds, prefix=prefix)["throughput_ips"])
            host_doc = model_doc(path, batch, 0, threads, hw, sink, fold=False)
            pipe_host.append(run_pipeline(host_doc, 1.0, seconds)["throughput_ips"])
        peer.append(run_peer(path, hw, batch, threads, seconds, sink)["throughput_ips"])
        ceiling = run_pipeline(model_doc(path, batch, 0, threads, hw, sink), 0.5, seconds, NullRunner(frame_spec))
        null.append(ceiling["throughput_ips"])
        null_cpu.append(ceiling["cpu_us_per_frame"])
    row = {
        "batch": batch,
        "engine_ips": spread(raw),
        "edged_ips": spread(pipe),
        "peer_ips": spread(peer),
        "null_engine_ips": spread(null),
        "null_engine_cpu_us_per_frame": spread(null_cpu),
    }
    if prefix is not None:
        row["engine_with_prefix_ips"] = spread(raw_prefix)
        row["edged_host_preprocess_ips"] = spread(pipe_host)
    row["ratio_edged_engine"] = row["edged_ips"]["median"] / row["engine_ips"]["median"]
    row["ratio_edged_peer"] = row["edged_ips"]["median"] / row["peer_ips"]["median"]
    return row


def added_latency(path: str, threads: int, saturation_ips: float, seconds: float, hw: List[int]) -> Dict[str, Any]:
    """At half the engine's saturation rate: the end-to-end p99 minus the engine's own p99."""
    rate = 0.5 * saturation_ips
    raw = run_raw(path, 1, threads, 1.0, seconds, rate_hz=rate)
    doc = model_doc(path, 1, rate, threads, hw, "")
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
        doc["models"] = [model_doc(path, 1, 30, threads, hw, "")]
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


def _describe(row: Dict[str, Any]) -> str:
    def fmt(key: str, unit: str = "/s") -> str:
        v = row[key]
        return f"{v['median']:.1f}{unit} [{v['min']:.1f}..{v['max']:.1f}]"

    extra = ""
    if "engine_with_prefix_ips" in row:
        extra = f"  engine+prefix {fmt('engine_with_prefix_ips')}"
        extra += f"  edged host-preprocessing {fmt('edged_host_preprocess_ips')}"
    return (
        f"batch {row['batch']}: (a) engine {fmt('engine_ips')}  (b) edged {fmt('edged_ips')}  "
        f"(c) peer {fmt('peer_ips')}  (d) null engine {fmt('null_engine_ips')}, "
        f"{fmt('null_engine_cpu_us_per_frame', ' us CPU/frame')}  "
        f"b/a {row['ratio_edged_engine']:.3f}  b/c {row['ratio_edged_peer']:.3f}{extra}"
    )


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
    with tempfile.TemporaryDirectory() as tmp:
        sink = str(Path(tmp) / "results.jsonl")
        for batch in args.batches:
            row = throughput_ratio(args.model, batch, args.threads, args.rounds, args.seconds, args.hw, sink)
            report["throughput"].append(row)
            print(_describe(row), flush=True)
    batch1 = next((r for r in report["throughput"] if r["batch"] == 1), report["throughput"][0])
    saturation = batch1["engine_ips"]["median"]
    report["latency"] = added_latency(args.model, args.threads, saturation, args.seconds * 2, args.hw)
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
