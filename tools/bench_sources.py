#!/usr/bin/env python3
"""Many cameras, one engine: N paced streams into one model versus N single-source models.

In one run, on one machine, two configurations serve the same streams (synthetic, paced):
  shared:   one model entry with ``sources:`` listing N sources: one engine, batched across them;
  separate: N model entries of the same model file, one source each: N engines.
Each runs in a fresh process (so resident memory is its own) for a warm-up and a measured
window, and reports: resident memory (VmRSS) and the part of it added by loading the models
and their sources (over the same process with its libraries and edged's modules loaded,
before the config was), CPU (user + system over wall time, in
cores), throughput (results per second) and the p99 of capture-to-result latency. The
figures are printed side by side; --json writes them too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODES = ("shared", "separate")
# The allocator setting edged.service runs with (systemd/edged.service): without it glibc
# gives each of the many pipeline threads its own heap, and memory figures would be those
# of a process the unit never starts.
UNIT_ENV = dict(os.environ, MALLOC_ARENA_MAX="2")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def config_doc(mode: str, args: argparse.Namespace, cache_dir: str) -> Dict[str, Any]:
    def source(index: int) -> Dict[str, Any]:
        return {"type": "synthetic", "fps": args.fps, "size": args.frame, "seed": index}

    def model(name: str) -> Dict[str, Any]:
        return {
            "name": name,
            "path": args.model,
            "threads": args.threads,
            "batch": args.batch if mode == "shared" else 1,
            "max_wait_ms": args.max_wait_ms,
            "queue_size": args.queue_size,
            "preprocess": {"size": args.hw},
            "postprocess": {"type": "classify", "top_k": 5},
            "sink": {"type": "null"},
        }

    if mode == "shared":
        entry = model("cams")
        entry["sources"] = [dict(source(i), id=f"cam{i}") for i in range(args.streams)]
        models = [entry]
    else:
        models = [dict(model(f"cam{i}"), source=source(i)) for i in range(args.streams)]
    return {"device": {"id": "bench"}, "plans": {"cache_dir": cache_dir}, "models": models}


def build_plans(args: argparse.Namespace) -> None:
    from edged.config import parse_config
    from edged.model_loading import platform_for
    from edged.model_set import ModelSet

    # Both setups' plans (the shared model's batch and the separate ones' batch 1 differ in
    # the plan key): a measured process that built its own would carry the build's memory.
    for mode in MODES:
        config = parse_config(config_doc(mode, args, args.cache_dir))
        models = ModelSet(config, platform_for(config.models))
        models.start()
        if not models.wait_started(300):
            raise RuntimeError(f"the {mode} setup's plans were not built in 300 s")
        models.stop()


def run_child(mode: str, args: argparse.Namespace) -> Dict[str, Any]:
    """One configuration in this process (called in a fresh subprocess)."""
    # The process's fixed part is loaded before the baseline: the runtime library, edged's
    # modules and what the pipeline loads on first use (OpenCV for the resize). Both
    # configurations carry it once; the comparison is about what the engines, their
    # pipelines and the sources add.
    import numpy as np
    import onnxruntime  # noqa: F401

    from edged.backends.onnxruntime.backend import OnnxRuntimeBackend
    from edged.config import parse_config
    from edged.model_loading import platform_for
    from edged.model_set import ModelSet
    from edged.pipeline.preprocess import resize
    from edged.pipeline.stats import LatencyHistogram

    OnnxRuntimeBackend()
    resize(np.zeros((4, 4, 3), np.uint8), (2, 2))
    baseline_mb = _rss_mb()
    config = parse_config(config_doc(mode, args, args.cache_dir))
    models = ModelSet(config, platform_for(config.models))
    models.start()
    if not models.wait_started(300):
        raise RuntimeError("models did not start")
    failed = {name: slot.error for name, slot in models.slots.items() if slot.error}
    if failed:
        raise RuntimeError(f"models failed: {failed}")
    pipelines = [slot.pipeline for slot in models.slots.values() if slot.pipeline is not None]
    time.sleep(args.warmup)
    out0 = sum(int(p.stats.counters()["frames_out"]) for p in pipelines)
    cpu0, t0 = _cpu_s(), time.monotonic()
    time.sleep(args.seconds)
    out1 = sum(int(p.stats.counters()["frames_out"]) for p in pipelines)
    cpu1, t1 = _cpu_s(), time.monotonic()
    e2e = LatencyHistogram()
    for pipeline in pipelines:
        e2e.merge(pipeline.stats.latency["e2e"].snapshot())
    rss_mb = _rss_mb()
    dropped = sum(sum(p.stats.counters()["dropped"].values()) for p in pipelines)
    models.stop()
    return {
        "mode": mode,
        "engines": sum(len(p.runners) for p in pipelines),
        "rss_mb": round(rss_mb, 1),
        "models_rss_mb": round(rss_mb - baseline_mb, 1),
        "cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
        "results_per_s": round((out1 - out0) / (t1 - t0), 1),
        "offered_per_s": args.streams * args.fps,
        "e2e_p99_ms": round(e2e.percentile(99) or 0.0, 2),
        "dropped": dropped,
    }


def _table(results: List[Dict[str, Any]]) -> str:
    rows = [
        ("engines", "engines"),
        ("resident memory (MB)", "rss_mb"),
        ("  of it, the models (MB)", "models_rss_mb"),
        ("CPU (cores)", "cpu_cores"),
        ("results per second", "results_per_s"),
        ("  offered", "offered_per_s"),
        ("p99 capture->result (ms)", "e2e_p99_ms"),
        ("frames dropped", "dropped"),
    ]
    by_mode = {r["mode"]: r for r in results}
    lines = [f"{'':28}{'one model, N sources':>24}{'N models, 1 source each':>26}"]
    for label, key in rows:
        lines.append(f"{label:28}{by_mode['shared'][key]!s:>24}{by_mode['separate'][key]!s:>26}")
    shared, separate = by_mode["shared"], by_mode["separate"]
    ratio = shared["models_rss_mb"] / separate["models_rss_mb"] if separate["models_rss_mb"] > 0 else float("nan")
    lines.append(f"memory of the models, shared / separate: {ratio:.2f} (target <= 0.25)")
    throughput = shared["results_per_s"] / separate["results_per_s"] if separate["results_per_s"] else float("nan")
    lines.append(f"throughput, shared / separate: {throughput:.2f} (target >= 1.0 within noise)")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "var/bench/mobilenetv2-shaped.onnx"))
    parser.add_argument("--hw", type=int, nargs=2, default=[224, 224], metavar=("H", "W"), help="network input")
    parser.add_argument("--frame", type=int, nargs=2, default=[360, 640], metavar=("H", "W"), help="frame size")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second of each stream")
    parser.add_argument("--batch", type=int, default=8, help="batch of the shared model (the separate ones run 1)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--queue-size", type=int, default=4, help="frames each stream may hold waiting (both setups)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads per engine (0: the backend's)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--child", choices=(*MODES, "build"), help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        print(f"{args.model}: no such model; write one with tools/make_bench_model.py", file=sys.stderr)
        return 2
    if args.child == "build":
        build_plans(args)
        return 0
    if args.child:
        print(json.dumps(run_child(args.child, args)))
        return 0
    import tempfile

    results = []
    with tempfile.TemporaryDirectory(prefix="edged-bench-sources-") as cache:
        # The plan is built once first, so neither measured process pays for (or keeps the
        # memory of) building it.
        for mode in ("build", *MODES):
            command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
            command += ["--child", mode, "--cache-dir", cache]
            done = subprocess.run(command, capture_output=True, text=True, check=False, env=UNIT_ENV)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            if mode != "build":
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
