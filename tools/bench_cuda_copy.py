#!/usr/bin/env python3
"""Pinned host-to-device / device-to-host copy bandwidth through edged.cuda (async copy on a
stream, timed with CUDA events) next to a plain synchronous cudaMemcpy loop in the same
process. With --baseline-binary, also a compiled C loop of cudaMemcpy (tools/cuda_copy_baseline.cu).

Prints one JSON document. Run on a GPU host: PYTHONPATH=. python3 tools/bench_cuda_copy.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from edged import cuda

MIB = 1 << 20


def _plain_loop(rt: cuda.CudaRuntime, dst: int, src: int, n: int, kind: int, reps: int) -> float:
    rt.copy(dst, src, n, kind)
    rt.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        rt.copy(dst, src, n, kind)
    rt.synchronize()
    return n * reps / (time.perf_counter() - t0) / 1e9


def _edged_events(rt: cuda.CudaRuntime, dst: int, src: int, n: int, kind: int, reps: int) -> Dict[str, float]:
    stream = rt.stream()
    start, end = rt.event(), rt.event()
    samples: List[float] = []
    try:
        rt.copy_async(dst, src, n, kind, stream)
        stream.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            start.record(stream)
            rt.copy_async(dst, src, n, kind, stream)
            end.record(stream)
            end.synchronize()
            samples.append(end.elapsed_ms(start))
        wall = time.perf_counter() - t0
    finally:
        for res in (end, start, stream):
            res.free()
    return {
        "events_median_gbps": n / (statistics.median(samples) / 1000.0) / 1e9,
        "wall_gbps": n * reps / wall / 1e9,
    }


def run(size_mib: int, reps: int, baseline_binary: Optional[str]) -> Dict[str, Any]:
    rt = cuda.load_runtime()
    props = rt.properties()
    n = size_mib * MIB
    report: Dict[str, Any] = {
        "device": props.name,
        "compute_capability": "{}.{}".format(*props.compute_capability),
        "integrated": props.integrated,
        "cuda_runtime": rt.runtime_version(),
        "cuda_driver": rt.driver_version(),
        "size_mib": size_mib,
        "reps": reps,
    }
    with rt.host_alloc(n) as host, rt.malloc(n) as dev:
        host.array("uint8", (n,))[:] = 0x5A
        for label, dst, src, kind in (
            ("h2d", dev.device_ptr, host.host_ptr, cuda.H2D),
            ("d2h", host.host_ptr, dev.device_ptr, cuda.D2H),
        ):
            plain = _plain_loop(rt, dst, src, n, kind, reps)
            ours = _edged_events(rt, dst, src, n, kind, reps)
            report[label] = {
                "plain_cudaMemcpy_loop_gbps": round(plain, 3),
                "edged_async_events_gbps": round(ours["events_median_gbps"], 3),
                "edged_async_wall_gbps": round(ours["wall_gbps"], 3),
                "edged_wall_vs_plain": round(ours["wall_gbps"] / plain, 4),
            }
    if baseline_binary:
        out = subprocess.run([baseline_binary, str(size_mib), str(reps)], capture_output=True, text=True, check=True)
        report["c_baseline"] = json.loads(out.stdout)
        for label in ("h2d", "d2h"):
            c = report["c_baseline"][f"{label}_gbps"]
            report[label]["edged_wall_vs_c_loop"] = round(report[label]["edged_async_wall_gbps"] / c, 4)
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--baseline-binary", help="compiled tools/cuda_copy_baseline.cu")
    args = parser.parse_args(argv)
    json.dump(run(args.size_mib, args.reps, args.baseline_binary), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
