#!/usr/bin/env python3
"""Engines side by side: what a model's ``instances`` buys over one engine.

One engine with every core computes each operator in parallel and waits, at every
operator, for its slowest thread; between two calls all its threads wait for the
pipeline. K engines of one model, each with its share of the cores and its own infer
thread, fill each other's gaps. In one run, on one machine, per batch size, rounds
alternating:

  (a)  the engine alone as a user's own loop runs it: ONNX Runtime's default session
       options, one calling thread, prepared float inputs;
  (aK) the same plan as K engines, each with the threads edged gives one of K instances
       (edged.backends.onnxruntime.cores.engine_cores) and its own calling thread;
  (b1) edged with one engine, its default;
  (bK) edged with ``instances: K``.

Printed: medians with min and max, and bK/a (what an operator gains over the engine
alone), bK/aK (what edged's pipeline keeps of K engines), b1/a, round by round. Then, at
half of (a)'s saturation rate and batch 1, each frame's capture-to-result time with one
engine and with K: an engine with a share of the cores takes longer per frame.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edged.backends import BuildOptions, get_backend  # noqa: E402
from edged.bench import make_inputs  # noqa: E402
from tools.bench_pipeline import (  # noqa: E402
    add_model_arguments,
    model_doc,
    ort_default_runner,
    run_pipeline,
    run_raw,
    spread,
)


def run_engines(path: str, batch: int, threads: int, instances: int, warmup_s: float, seconds: float) -> float:
    """(aK): frames per second of ``instances`` engines of one plan, each called in a tight
    loop by its own thread, with the threads edged gives each of them."""
    backend = get_backend("onnxruntime")
    each = backend.engine_cores(threads, instances).threads
    plan = backend.build_plan(path, BuildOptions(batch=batch, threads=threads)).plan
    runners = [ort_default_runner(plan, each) for _ in range(instances)]
    feeds = make_inputs(runners[0].inputs, batch)
    counts = [0] * instances
    measuring = threading.Event()
    stop = threading.Event()

    def loop(index: int) -> None:
        while not stop.is_set():
            runners[index].infer(feeds)
            if measuring.is_set():
                counts[index] += 1

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(instances)]
    for worker in workers:
        worker.start()
    time.sleep(warmup_s)
    measuring.set()
    start = time.perf_counter()
    time.sleep(seconds)
    measuring.clear()
    elapsed = time.perf_counter() - start
    stop.set()
    for worker in workers:
        worker.join()
    for runner in runners:
        runner.close()
    return sum(counts) * batch / elapsed


def instances_row(
    path: str, batch: int, threads: int, instances: int, rounds: int, seconds: float, hw: List[int], sink: str
) -> Dict[str, Any]:
    raw, raw_k, one, many = [], [], [], []
    edged = [model_doc(path, batch, 0, threads, hw, sink, instances=count) for count in (1, instances)]
    for index in range(rounds):
        steps = [
            lambda: raw.append(run_raw(path, batch, threads, 1.0, seconds)["throughput_ips"]),
            lambda: raw_k.append(run_engines(path, batch, threads, instances, 1.0, seconds)),
            lambda: one.append(run_pipeline(edged[0], 1.0, seconds)["throughput_ips"]),
            lambda: many.append(run_pipeline(edged[1], 1.0, seconds)["throughput_ips"]),
        ]
        for step in steps if index % 2 == 0 else reversed(steps):
            step()
    return {
        "batch": batch,
        "instances": instances,
        "engine_ips": spread(raw),
        "engines_ips": spread(raw_k),
        "edged_one_ips": spread(one),
        "edged_instances_ips": spread(many),
        "ratio_instances_engine_by_round": spread([b / a for a, b in zip(raw, many)]),
        "ratio_instances_engines_by_round": spread([b / a for a, b in zip(raw_k, many)]),
        "ratio_one_engine_by_round": spread([b / a for a, b in zip(raw, one)]),
    }


def frame_latency(
    path: str, threads: int, instances: int, rate_hz: float, rounds: int, seconds: float, hw: List[int]
) -> Dict[str, Any]:
    """Capture-to-result p50 and p99 (ms) at ``rate_hz`` and batch 1, one engine against
    ``instances``, rounds alternating."""
    found: Dict[int, Dict[str, List[float]]] = {1: {"p50": [], "p99": []}, instances: {"p50": [], "p99": []}}
    for index in range(rounds):
        for count in (1, instances) if index % 2 == 0 else (instances, 1):
            doc = dict(model_doc(path, 1, rate_hz, threads, hw, "", instances=count), max_wait_ms=0)
            result = run_pipeline(doc, 1.0, seconds)
            found[count]["p50"].append(result["e2e_p50_ms"])
            found[count]["p99"].append(result["e2e_p99_ms"])
    return {
        "rate_hz": rate_hz,
        "one": {k: spread(v) for k, v in found[1].items()},
        "instances": {k: spread(v) for k, v in found[instances].items()},
    }


def _fmt(values: Dict[str, Any], digits: int = 1) -> str:
    return f"{values['median']:.{digits}f} [{values['min']:.{digits}f}..{values['max']:.{digits}f}]"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, seconds=3.0)
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args(argv)
    k = args.instances
    saturation = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        sink = str(Path(tmp) / "results.jsonl")
        for batch in args.batches:
            row = instances_row(args.model, batch, args.threads, k, args.rounds, args.seconds, args.hw, sink)
            if batch == 1:
                saturation = row["engine_ips"]["median"]
            print(
                f"batch {batch}: (a) engine {_fmt(row['engine_ips'])}/s  (a{k}) {k} engines "
                f"{_fmt(row['engines_ips'])}/s  (b1) edged {_fmt(row['edged_one_ips'])}/s  (b{k}) edged, "
                f"instances {k}: {_fmt(row['edged_instances_ips'])}/s  by round: b{k}/a "
                f"{_fmt(row['ratio_instances_engine_by_round'], 3)}  b{k}/a{k} "
                f"{_fmt(row['ratio_instances_engines_by_round'], 3)}  b1/a {_fmt(row['ratio_one_engine_by_round'], 3)}",
                flush=True,
            )
    if saturation:
        lat = frame_latency(args.model, args.threads, k, saturation / 2, args.rounds, args.seconds * 2, args.hw)
        print(
            f"at {lat['rate_hz']:.1f}/s, batch 1, capture to result: one engine p50 {_fmt(lat['one']['p50'], 2)} ms, "
            f"p99 {_fmt(lat['one']['p99'], 2)} ms; instances {k}: p50 {_fmt(lat['instances']['p50'], 2)} ms, "
            f"p99 {_fmt(lat['instances']['p99'], 2)} ms",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
