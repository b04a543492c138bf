"""``edged-bench``: a trtexec-style benchmark for any backend edged supports.

Runs the backend alone in a tight loop on preallocated inputs, so its figures are the
ceiling that edged's pipeline is measured against (tools/bench_pipeline.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edged.backends import BuildOptions, Runner, TensorSpec, get_backend
from edged.errors import EdgedError

__all__ = ["BenchResult", "make_inputs", "measure", "main"]


@dataclass
class BenchResult:
    backend: str
    version: str
    batch: int
    iterations: int
    duration_s: float
    throughput_ips: float
    latency_ms: Dict[str, float]
    device_ms: Dict[str, float] = field(default_factory=dict)
    samples_ms: List[float] = field(default_factory=list, repr=False)
    sample_times_s: List[float] = field(default_factory=list, repr=False)

    def to_json(self) -> Dict[str, Any]:
        doc = asdict(self)
        doc.pop("samples_ms")
        doc.pop("sample_times_s")
        return doc


def make_inputs(specs: Sequence[TensorSpec], batch: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random inputs for every model input; dynamic dimensions: batch first, 1 elsewhere."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = [d if d is not None else (batch if i == 0 else 1) for i, d in enumerate(spec.shape)]
        if spec.dtype.startswith("float"):
            feeds[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.integers(0, 127, size=shape).astype(spec.dtype)
    return feeds


def summarize(samples_ms: Sequence[float]) -> Dict[str, float]:
    arr = np.asarray(samples_ms, dtype=np.float64)
    return {
        "min": float(arr.min()),
        "mean": float(arr.mean()),
        "median": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


def measure(
    runner: Runner,
    batch: int,
    warmup_s: float = 1.0,
    duration_s: float = 5.0,
    iterations: int = 0,
    rate_hz: float = 0.0,
) -> Dict[str, Any]:
    """Time ``runner.infer`` back to back (or paced at ``rate_hz`` calls per second)."""
    feeds = make_inputs(runner.inputs, batch)
    end_warmup = time.perf_counter() + warmup_s
    while time.perf_counter() < end_warmup:
        runner.infer(feeds)
    samples: List[float] = []
    stamps: List[float] = []
    device: Dict[str, List[float]] = {"h2d": [], "compute": [], "d2h": []}
    period = 1.0 / rate_hz if rate_hz > 0 else 0.0
    start = time.perf_counter()
    next_call = start
    while True:
        now = time.perf_counter()
        if iterations and len(samples) >= iterations:
            break
        if not iterations and now - start >= duration_s:
            break
        if period:
            if now < next_call:
                time.sleep(next_call - now)
            next_call += period
        t0 = time.perf_counter()
        runner.infer(feeds)
        t1 = time.perf_counter()
        samples.append((t1 - t0) * 1000.0)
        stamps.append(t0 - start)
        timings = runner.last_timings
        for key, value in (("h2d", timings.h2d_ms), ("compute", timings.compute_ms), ("d2h", timings.d2h_ms)):
            if value is not None:
                device[key].append(value)
    elapsed = time.perf_counter() - start
    return {
        "iterations": len(samples),
        "duration_s": elapsed,
        "throughput_ips": len(samples) * batch / elapsed,
        "samples_ms": samples,
        "sample_times_s": stamps,
        "device_ms": {k: float(np.mean(v)) for k, v in device.items() if v},
    }


def plot(result: BenchResult, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EdgedError("--plot needs matplotlib: apt install python3-matplotlib or pip install matplotlib") from exc
    fig, (hist, series) = plt.subplots(1, 2, figsize=(11, 4))
    hist.hist(result.samples_ms, bins=60)
    hist.set_xlabel("latency (ms)")
    hist.set_ylabel("calls")
    hist.set_title(f"{result.backend} batch {result.batch}: latency histogram")
    series.plot(result.sample_times_s, result.samples_ms, linewidth=0.6)
    series.set_xlabel("time (s)")
    series.set_ylabel("latency (ms)")
    series.set_title(f"{result.throughput_ips:.1f} inferences/s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_bench(args: argparse.Namespace) -> BenchResult:
    backend = get_backend(args.backend)
    options = BuildOptions(precision=args.precision, device=args.device, batch=args.batch, threads=args.threads)
    if args.plan:
        with open(args.plan, "rb") as handle:
            runner = backend.load_plan(handle.read(), options)
    else:
        runner = backend.load_plan(backend.build_plan(args.model, options).plan, options)
    try:
        raw = measure(runner, args.batch, args.warmup, args.duration, args.iterations)
    finally:
        runner.close()
    return BenchResult(
        backend=backend.name,
        version=backend.version(),
        batch=args.batch,
        iterations=raw["iterations"],
        duration_s=raw["duration_s"],
        throughput_ips=raw["throughput_ips"],
        latency_ms=summarize(raw["samples_ms"]),
        device_ms=raw["device_ms"],
        samples_ms=raw["samples_ms"],
        sample_times_s=raw["sample_times_s"],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edged-bench", description="Benchmark a model or a cached plan on one backend."
    )
    parser.add_argument("model", nargs="?", help="ONNX model file (or give --plan)")
    parser.add_argument("--plan", help="a plan file built earlier for this backend and machine")
    parser.add_argument("--backend", default="onnxruntime", help="backend name (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32")
    parser.add_argument("--device", default="cpu", help="cpu | gpu | dla0 | dla1 (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="CPU backend threads; 0: backend default")
    parser.add_argument("--warmup", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--duration", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--iterations", type=int, default=0, help="stop after N calls instead of --duration")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="latency histogram and latency-over-time chart")
    return parser


def _print_human(result: BenchResult) -> None:
    lat = result.latency_ms
    print(f"backend      {result.backend} {result.version}, batch {result.batch}")
    calls = f"{result.iterations} calls in {result.duration_s:.2f} s"
    print(f"throughput   {result.throughput_ips:.1f} inferences/s ({calls})")
    print("latency ms   " + "  ".join(f"{k} {v:.3f}" for k, v in lat.items()))
    for key, value in result.device_ms.items():
        print(f"{key:<12} mean {value:.3f} ms")


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.model and not args.plan:
        parser.error("give a model file or --plan")
    if args.batch < 1 or args.duration <= 0 or args.iterations < 0:
        parser.error("--batch must be >= 1, --duration > 0, --iterations >= 0")
    try:
        result = run_bench(args)
        if args.plot:
            plot(result, args.plot)
    except EdgedError as exc:
        print(f"edged-bench: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"edged-bench: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_human(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
