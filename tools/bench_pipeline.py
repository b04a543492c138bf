#!/usr/bin/env python3
"""Pipeline efficiency: how much of the raw backend's throughput edged's pipeline delivers.

In one run, on one machine, with one model, per batch size, rounds alternating:
  (a) engine: the backend alone in a tight loop on prepared float inputs (edged.bench.measure);
  (b) edged: source -> preprocess -> batch -> infer -> postprocess -> JSON-lines sink, with
      edged's defaults: the preprocessing folded into the plan where edged folds it, and on
      hosts of 8 cores or more two engines sharing all cores but one, the one left to the
      pipeline (edged.backends.onnxruntime.cores), where the host preprocesses batches; the
      other way of preprocessing is measured beside it, on as many engines;
  (c) peer: tools/peer_one_loop.py, the one-loop script a user would write;
  (d) ceiling: edged with a null engine (a runner returning a fixed output), and the
      process CPU it spends per frame.
Medians with min and max; ratios b/a and b/c, and b/a round by round (median, min, max).
Also, at half the raw saturation rate, the latency edged adds per frame (capture to result
minus that frame's engine call; p50, p99), and the daemon's peak resident memory beyond a
bare process holding the same ONNX Runtime sessions (one per engine edged runs), on a warm
start and on first boot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from edged.backends import BuildOptions, Runner, TensorSpec, get_backend  # noqa: E402
from edged.backends.input_prefix import FRAME_INPUT, InputPrefix  # noqa: E402
from edged.backends.onnxruntime.backend import OnnxRuntimeRunner  # noqa: E402
from edged.bench import measure, summarize  # noqa: E402
from edged.config import parse_config  # noqa: E402
from edged.model_loading import build_options, folding_for, instances_for  # noqa: E402
from edged.pipeline.folding import decide_folding  # noqa: E402
from edged.pipeline.model_pipeline import ModelPipeline  # noqa: E402
from edged.pipeline.stats import LatencyHistogram  # noqa: E402
from tools.peer_one_loop import run as run_peer  # noqa: E402

# Model settings the command line adds to every edged configuration (--spin-wait-us).
EDGED_SETTINGS: Dict[str, Any] = {}


def model_doc(
    path: str, batch: int, fps: float, threads: int, hw: List[int], sink: str, fold: bool = True, instances: int = 0
) -> Dict[str, Any]:
    """``instances`` 0: edged's choice (edged.model_loading.instances_for)."""
    return {
        **EDGED_SETTINGS,
        "instances": instances,
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


class TimedRunner(Runner):
    """Another runner, with the wall-clock start and end of each of its calls kept in call
    order: at batch 1 from one source the k-th result comes from the k-th call."""

    def __init__(self, inner: Runner) -> None:
        super().__init__()
        self._inner = inner
        self.inputs, self.outputs = inner.inputs, inner.outputs
        self.calls: List[Tuple[float, float]] = []

    def attach_thread(self) -> None:
        self._inner.attach_thread()

    def _infer_impl(self, feeds: Any) -> Dict[str, np.ndarray]:
        start = time.time()
        outputs = self._inner.infer(feeds)
        self.calls.append((start, time.time()))
        return outputs

    def _close_impl(self) -> None:
        self._inner.close()


def added_by_edged(calls: List[Tuple[float, float]], k: int, captured: float, done: float) -> Tuple[float, float]:
    """For the frame served by call ``k``: (capture to result minus its engine call, the same
    less the time it waited for the engine to finish the previous frame) in ms. The second
    is what the pipeline itself adds; the first also holds queueing behind a slow engine call,
    which any server at half load sees (the engine's tail, not edged's)."""
    start, end = calls[k]
    busy_until = calls[k - 1][1] if k > 0 else captured
    total = (done - captured) - (end - start)
    return total * 1000.0, (total - max(0.0, busy_until - captured)) * 1000.0


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
    doc: Dict[str, Any],
    warmup_s: float,
    duration_s: float,
    runner: Optional[Runner] = None,
    per_frame_added: bool = False,
    extra: Sequence[Runner] = (),
) -> Dict[str, Any]:
    """``runner`` and ``extra``: the engines to serve ``doc`` from; none: built and loaded
    as the daemon would."""
    config = parse_config({"device": {"id": "bench"}, "models": [doc]}).models[0]
    if runner is None:
        # As the daemon loads them (edged.model_loading): its instances from one plan.
        backend = get_backend("onnxruntime")
        options = build_options(config)
        plan = backend.build_plan(config.path, options).plan
        runner, *extra = [backend.load_plan(plan, options) for _ in range(options.instances)]
    # Call order is result order only with one engine (added_by_edged).
    timed = TimedRunner(runner) if per_frame_added and not extra else None
    pipeline = ModelPipeline(config, timed or runner, extra_runners=extra)
    measuring = threading.Event()
    added_ms: List[Tuple[float, float]] = []
    if timed is not None:
        results = iter(range(1 << 62))

        def added(record: Dict[str, Any]) -> None:
            k, done = next(results), time.time()
            if measuring.is_set():
                added_ms.append(added_by_edged(timed.calls, k, record["capture_ts"], done))

        pipeline.results_hook = added
    pipeline.start()
    time.sleep(warmup_s)
    out0, cpu0 = pipeline.stats.counters()["frames_out"], _cpu_s()
    warm = pipeline.stats.latency["e2e"].snapshot()
    measuring.set()
    t0 = time.monotonic()
    time.sleep(duration_s)
    out1, cpu1 = pipeline.stats.counters()["frames_out"], _cpu_s()
    t1 = time.monotonic()
    measuring.clear()
    e2e = _since(pipeline.stats.latency["e2e"].snapshot(), warm)
    pipeline.stop()
    frames = int(out1) - int(out0)
    return {
        "throughput_ips": frames / (t1 - t0),
        "cpu_us_per_frame": (cpu1 - cpu0) / max(frames, 1) * 1e6,
        "e2e_p50_ms": e2e.percentile(50),
        "e2e_p99_ms": e2e.percentile(99),
        "added_ms": added_ms,
        "folded": runner.inputs[0].name == FRAME_INPUT,
    }


def ort_default_runner(plan: bytes, threads: int) -> Runner:
    """The engine as a user's own loop would run it: ONNX Runtime's default session options
    (pool threads spinning between runs, its own thread placement), not the ones edged sets."""
    import onnxruntime

    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = threads
    return OnnxRuntimeRunner(onnxruntime.InferenceSession(plan, so, providers=["CPUExecutionProvider"]))


def run_raw(
    path: str,
    batch: int,
    threads: int,
    warmup_s: float,
    duration_s: float,
    rate_hz: float = 0.0,
    prefix: Optional[InputPrefix] = None,
    ort_defaults: bool = True,
) -> Dict[str, Any]:
    backend = get_backend("onnxruntime")
    options = BuildOptions(
        batch=batch, threads=threads, input_prefix=prefix, spin_wait_us=int(EDGED_SETTINGS.get("spin_wait_us", 200))
    )
    plan = backend.build_plan(path, options).plan
    runner = ort_default_runner(plan, threads) if ort_defaults else backend.load_plan(plan, options)
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
    raw, raw_edged, raw_prefix, pipe, pipe_other, peer, null, null_cpu = [], [], [], [], [], [], [], []
    frame_spec = TensorSpec(FRAME_INPUT, (None, hw[0], hw[1], 3), "uint8")
    doc = model_doc(path, batch, 0, threads, hw, sink)
    config = parse_config({"device": {"id": "bench"}, "models": [doc]}).models[0]
    folds = folding_for(config).prefix is not None  # edged's choice on this host
    # The prefix were it folded, whatever the host: the engine with it, and the other way round.
    prefix = decide_folding(config, "onnxruntime", get_backend("onnxruntime").version()).prefix
    for _ in range(rounds):
        raw.append(run_raw(path, batch, threads, 1.0, seconds)["throughput_ips"])
        raw_edged.append(run_raw(path, batch, threads, 1.0, seconds, ort_defaults=False)["throughput_ips"])
        pipe.append(run_pipeline(doc, 1.0, seconds)["throughput_ips"])
        if prefix is not None:
            raw_prefix.append(run_raw(path, batch, threads, 1.0, seconds, prefix=prefix)["throughput_ips"])
            if folds:
                other = run_pipeline(model_doc(path, batch, 0, threads, hw, sink, fold=False), 1.0, seconds)
            else:
                options = dataclasses.replace(build_options(config), input_prefix=prefix)
                backend = get_backend("onnxruntime")
                plan = backend.build_plan(path, options).plan
                folded, *others = [backend.load_plan(plan, options) for _ in range(options.instances)]
                other = run_pipeline(doc, 1.0, seconds, folded, extra=others)
            pipe_other.append(other["throughput_ips"])
        peer.append(run_peer(path, hw, batch, threads, seconds, sink)["throughput_ips"])
        ceiling = run_pipeline(model_doc(path, batch, 0, threads, hw, sink), 0.5, seconds, NullRunner(frame_spec))
        null.append(ceiling["throughput_ips"])
        null_cpu.append(ceiling["cpu_us_per_frame"])
    row = {
        "batch": batch,
        "engine_ips": spread(raw),
        "engine_edged_options_ips": spread(raw_edged),
        "edged_ips": spread(pipe),
        "edged_preprocessing": "plan" if folds else "host",
        "peer_ips": spread(peer),
        "null_engine_ips": spread(null),
        "null_engine_cpu_us_per_frame": spread(null_cpu),
    }
    if prefix is not None:
        row["engine_with_prefix_ips"] = spread(raw_prefix)
        row["edged_host_preprocess_ips" if folds else "edged_folded_ips"] = spread(pipe_other)
    row["ratio_edged_engine"] = row["edged_ips"]["median"] / row["engine_ips"]["median"]
    row["ratio_edged_peer"] = row["edged_ips"]["median"] / row["peer_ips"]["median"]
    # Each round's b over that round's a: the two ran seconds apart, so a machine that changes
    # speed between rounds moves both (the ratio of medians pairs a fast round with a slow one).
    row["ratio_edged_engine_by_round"] = spread([b / a for a, b in zip(raw, pipe)])
    return row


def added_latency(
    path: str, threads: int, saturation_ips: float, seconds: float, hw: List[int], fold: bool = True
) -> Dict[str, Any]:
    """At half the engine's saturation rate, what edged adds to each frame (see added_by_edged);
    ``fold``: False keeps the preprocessing on the host."""
    rate = 0.5 * saturation_ips
    raw = run_raw(path, 1, threads, 1.0, seconds, rate_hz=rate)
    # One engine: the k-th result is then the k-th call's (added_by_edged). What the pipeline
    # adds to a frame does not depend on how many engines serve it.
    doc = model_doc(path, 1, rate, threads, hw, "", fold=fold, instances=1)
    doc["max_wait_ms"] = 0
    pipe = run_pipeline(doc, 1.0, seconds, per_frame_added=True)
    with_waits = summarize([total for total, _ in pipe["added_ms"]])
    own = summarize([mine for _, mine in pipe["added_ms"]])
    return {
        "rate_hz": rate,
        "raw_p99_ms": raw["p99_ms"],
        "pipeline_e2e_p99_ms": pipe["e2e_p99_ms"],
        "e2e_p99_minus_raw_p99_ms": pipe["e2e_p99_ms"] - raw["p99_ms"],
        "added_with_engine_waits_p99_ms": with_waits["p99"],
        "added_p50_ms": own["median"],
        "added_p99_ms": own["p99"],
        "added_max_ms": own["max"],
        "frames": len(pipe["added_ms"]),
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
    cpu = ["CPUExecutionProvider"]
    sessions = [ort.InferenceSession(sys.argv[1], so, providers=cpu) for _ in range(int(sys.argv[4]))]
    import ctypes; ctypes.CDLL("libc.so.6").malloc_trim(0)  # as lean as edged after a load (edged/heap.py)
    s = sessions[0]
    x = np.zeros([1] + [d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape[1:]], np.float32)
    end = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < end:
        for s in sessions:
            s.run(None, {s.get_inputs()[0].name: x})
        time.sleep(1 / 30)
    """
)


def _peak_rss_mb(cmd: List[str]) -> float:
    # With the allocator setting edged.service runs with (systemd/edged.service), for both.
    env = dict(os.environ, MALLOC_ARENA_MAX="2")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO), env=env)
    peak = 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, _rss_mb(proc.pid))
        except (OSError, RuntimeError):
            break
        time.sleep(0.1)
    if proc.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited with {proc.returncode}")
    return peak


def memory_beyond_backend(path: str, threads: int, hw: List[int], seconds: float = 6.0) -> Dict[str, float]:
    """Peak RSS of `edged run` serving the model minus a bare process running the same sessions
    (as many as the engines edged serves it from, instances_for): on first boot (the daemon
    builds the plan) and on a warm start (it loads the cached plan)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edged.yaml"
        doc = {
            "device": {"id": "bench"},
            "plans": {"cache_dir": str(Path(tmp) / "plans")},
            "telemetry": {"period_s": 1},
        }
        doc["models"] = [model_doc(path, 1, 30, threads, hw, "")]
        config.write_text(json.dumps(doc))
        daemon = [sys.executable, "-m", "edged", "run", "--config", str(config), "--duration", str(seconds)]
        engines, _ = instances_for(parse_config(doc).models[0])
        engine_threads = get_backend("onnxruntime").engine_cores(threads, engines).threads
        bare = [sys.executable, "-c", _BASELINE, path, str(engine_threads), str(seconds), str(engines)]
        backend = _peak_rss_mb(bare)
        first_boot = _peak_rss_mb(daemon)
        warm_start = _peak_rss_mb(daemon)
    return {
        "engines": engines,
        "backend_only_rss_mb": backend,
        "first_boot_rss_mb": first_boot,
        "daemon_rss_mb": warm_start,
        "first_boot_beyond_backend_mb": first_boot - backend,
        "beyond_backend_mb": warm_start - backend,
    }


def _describe(row: Dict[str, Any]) -> str:
    def fmt(key: str, unit: str = "/s") -> str:
        v = row[key]
        return f"{v['median']:.1f}{unit} [{v['min']:.1f}..{v['max']:.1f}]"

    extra = ""
    paired = row["ratio_edged_engine_by_round"]
    if "engine_with_prefix_ips" in row:
        extra = f"  engine+prefix {fmt('engine_with_prefix_ips')}"
        if "edged_host_preprocess_ips" in row:
            extra += f"  edged host-preprocessing {fmt('edged_host_preprocess_ips')}"
        else:
            extra += f"  edged folded {fmt('edged_folded_ips')}"
    return (
        f"batch {row['batch']}: (a) engine {fmt('engine_ips')} (with edged's session options "
        f"{fmt('engine_edged_options_ips')})  "
        f"(b) edged ({row['edged_preprocessing']} preprocessing) {fmt('edged_ips')}  "
        f"(c) peer {fmt('peer_ips')}  (d) null engine {fmt('null_engine_ips')}, "
        f"{fmt('null_engine_cpu_us_per_frame', ' us CPU/frame')}  "
        f"b/a {row['ratio_edged_engine']:.3f} "
        f"(by round {paired['median']:.3f} [{paired['min']:.3f}..{paired['max']:.3f}])  "
        f"b/c {row['ratio_edged_peer']:.3f}{extra}"
    )


def add_model_arguments(parser: argparse.ArgumentParser, seconds: float) -> None:
    """The model, frame size, batch sizes, threads and rounds every pipeline benchmark takes."""
    parser.add_argument("--model", default=str(REPO / "var/bench/mobilenetv2-shaped.onnx"))
    parser.add_argument("--hw", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=seconds, help="measurement seconds per round")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, seconds=4.0)
    parser.add_argument("--memory-seconds", type=float, default=6.0, help="run time of each memory probe")
    parser.add_argument("--spin-wait-us", type=int, help="edged's models with this spin_wait_us (default: edged's)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.spin_wait_us is not None:
        EDGED_SETTINGS["spin_wait_us"] = args.spin_wait_us
    if not Path(args.model).exists():
        subprocess.run([sys.executable, str(REPO / "tools/make_bench_model.py"), "--out", args.model], check=True)
    report: Dict[str, Any] = {"model": args.model, "cpus": os.cpu_count(), "threads": args.threads, "throughput": []}
    report["edged_settings"] = dict(EDGED_SETTINGS)
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
        f"at {lat['rate_hz']:.1f}/s, batch 1: engine alone p99 {lat['raw_p99_ms']:.2f} ms; edged e2e p99 "
        f"{lat['pipeline_e2e_p99_ms']:.2f} ms; added by edged per frame (capture to result minus the "
        f"engine's own call and any wait for it to finish the previous frame) p50 {lat['added_p50_ms']:.3f} ms, "
        f"p99 {lat['added_p99_ms']:.3f} ms, max {lat['added_max_ms']:.2f} ms over {lat['frames']} frames "
        f"(p99 with those waits {lat['added_with_engine_waits_p99_ms']:.2f} ms)",
        flush=True,
    )
    doc = model_doc(args.model, 1, 0, args.threads, args.hw, "")
    if folding_for(parse_config({"device": {"id": "bench"}, "models": [doc]}).models[0]).prefix is not None:
        # Batch 1 folds; host preprocessing would add its own time to every frame.
        host = added_latency(args.model, args.threads, saturation, args.seconds * 2, args.hw, fold=False)
        report["latency_host_preprocessing"] = host
        print(
            f"the same with host preprocessing: p50 {host['added_p50_ms']:.3f} ms, p99 {host['added_p99_ms']:.3f} ms, "
            f"max {host['added_max_ms']:.2f} ms over {host['frames']} frames",
            flush=True,
        )
    report["memory"] = memory_beyond_backend(args.model, args.threads, args.hw, args.memory_seconds)
    mem = report["memory"]
    print(
        f"memory (peak RSS): backend alone ({mem['engines']} engine(s)) {mem['backend_only_rss_mb']:.0f} MB; "
        f"daemon on a warm start "
        f"{mem['daemon_rss_mb']:.0f} MB, beyond {mem['beyond_backend_mb']:.0f} MB; on first boot (building "
        f"the plan) {mem['first_boot_rss_mb']:.0f} MB, beyond {mem['first_boot_beyond_backend_mb']:.0f} MB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
