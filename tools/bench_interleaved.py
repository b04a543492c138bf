#!/usr/bin/env python3
"""Edged, the engine alone and the peer script in short alternating slices, for machines that change speed.

bench_pipeline.py alternates whole rounds of a few seconds, each in a fresh setup. On a
machine whose speed flips every few seconds (a shared host's steal time), one round of
the engine alone can meet a fast spell and the next round of edged a slow one. Here edged
stays set up for the whole run, and the three take turns of ``--slice-seconds``:

  (a) the engine alone in a tight loop on prepared float inputs, ONNX Runtime's default
      session options (a fresh session each slice: its pool threads spin on after a run,
      and would otherwise take cores from edged's next slice);
  (b) edged's pipeline (synthetic source at the network size, edged's preprocessing choice,
      top-5, JSON-lines sink), gated at its engine: between its slices the infer thread
      waits at the gate, the sources fill their queues and block, and nothing computes;
  (c) the one-loop peer script (tools/peer_one_loop.py), a fresh session each slice.

Each round of neighbouring slices gives one ratio b/a and one b/c; printed: the median
ratios with min and max, and each one's median rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from edged.backends import BuildOptions, Runner, get_backend  # noqa: E402
from edged.bench import measure  # noqa: E402
from edged.config import parse_config  # noqa: E402
from edged.model_loading import build_options  # noqa: E402
from edged.pipeline.model_pipeline import ModelPipeline  # noqa: E402
from tools.bench_pipeline import model_doc, ort_default_runner  # noqa: E402
from tools.peer_one_loop import run as run_peer  # noqa: E402


class GatedRunner(Runner):
    """Another runner that calls through only while its gate is open."""

    def __init__(self, inner: Runner) -> None:
        super().__init__()
        self._inner = inner
        self.inputs, self.outputs = inner.inputs, inner.outputs
        self._state = threading.Condition()
        self._open = False
        self._busy = False

    def attach_thread(self) -> None:
        self._inner.attach_thread()

    def open_gate(self) -> None:
        with self._state:
            self._open = True
            self._state.notify_all()

    def close_gate(self) -> None:
        """Shut the gate and wait for a call in flight to end."""
        with self._state:
            self._open = False
            self._state.wait_for(lambda: not self._busy)

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        with self._state:
            self._state.wait_for(lambda: self._open)
            self._busy = True
        try:
            return self._inner.infer(feeds)
        finally:
            self.last_timings = self._inner.last_timings
            with self._state:
                self._busy = False
                self._state.notify_all()

    def _close_impl(self) -> None:
        self.open_gate()
        self._inner.close()


def engine_slice(plan: bytes, batch: int, threads: int, seconds: float) -> float:
    runner = ort_default_runner(plan, threads)
    try:
        return float(measure(runner, batch, 0.2, seconds)["throughput_ips"])
    finally:
        runner.close()


def edged_slice(pipeline: ModelPipeline, gated: GatedRunner, seconds: float) -> float:
    gated.open_gate()
    time.sleep(0.2)  # the queues are full: it runs at saturation at once; let the engine warm
    start, first = time.monotonic(), pipeline.stats.counters()["frames_out"]
    time.sleep(seconds)
    rate = (pipeline.stats.counters()["frames_out"] - first) / (time.monotonic() - start)
    gated.close_gate()
    return float(rate)


def interleaved(
    path: str, batch: int, threads: int, slices: int, seconds: float, hw: List[int], sink: str, peer_sink: str = ""
) -> Dict[str, Any]:
    backend = get_backend("onnxruntime")
    raw_plan = backend.build_plan(path, BuildOptions(batch=batch, threads=threads)).plan
    config = parse_config(
        {"device": {"id": "bench"}, "models": [model_doc(path, batch, 0, threads, hw, sink, instances=1)]}
    )
    model = config.models[0]
    options = build_options(model)
    gated = GatedRunner(backend.load_plan(backend.build_plan(path, options).plan, options))
    pipeline = ModelPipeline(model, gated)
    pipeline.start()
    rates: Dict[str, List[float]] = {"engine": [], "edged": [], "peer": []}
    runs: Dict[str, Callable[[], float]] = {
        "engine": lambda: engine_slice(raw_plan, batch, threads, seconds),
        "edged": lambda: edged_slice(pipeline, gated, seconds),
        "peer": lambda: float(run_peer(path, hw, batch, threads, seconds, peer_sink or os.devnull)["throughput_ips"]),
    }
    order = list(runs)
    try:
        for index in range(slices):
            # The order rotates, so none always follows another's warm caches.
            for name in order[index % 3 :] + order[: index % 3]:
                rates[name].append(runs[name]())
    finally:
        gated.open_gate()
        pipeline.stop()
    ratios = [b / a for a, b in zip(rates["engine"], rates["edged"])]
    peer_ratios = [b / c for c, b in zip(rates["peer"], rates["edged"])]
    return {
        "batch": batch,
        "preprocessing": "plan" if options.input_prefix is not None else "host",
        "engine_ips": rates["engine"],
        "edged_ips": rates["edged"],
        "peer_ips": rates["peer"],
        "ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "peer_ratios": peer_ratios,
        "peer_ratio_median": statistics.median(peer_ratios),
    }


_RATES = (("engine alone", "engine_ips"), ("edged", "edged_ips"), ("peer", "peer_ips"))


def _spread(values: List[float], form: str, unit: str = "") -> str:
    """Median [min..max]."""
    return f"{statistics.median(values):{form}}{unit} [{min(values):{form}}..{max(values):{form}}]"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "var/bench/mobilenetv2-shaped.onnx"))
    parser.add_argument("--hw", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--slices", type=int, default=15, help="rounds of slices per batch size")
    parser.add_argument("--slice-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    if not Path(args.model).exists():
        subprocess.run([sys.executable, str(REPO / "tools/make_bench_model.py"), "--out", args.model], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            sinks = str(Path(tmp) / "edged.jsonl"), str(Path(tmp) / "peer.jsonl")
            row = interleaved(args.model, batch, args.threads, args.slices, args.slice_seconds, args.hw, *sinks)
            rates = ", ".join(f"{name} {_spread(row[key], '.1f', '/s')}" for name, key in _RATES)
            head = f"batch {batch} ({row['preprocessing']} preprocessing), {len(row['ratios'])} rounds of "
            print(
                f"{head}{args.slice_seconds:g} s slices: b/a {_spread(row['ratios'], '.3f')}; {rates}; "
                f"b/c {_spread(row['peer_ratios'], '.3f')}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
