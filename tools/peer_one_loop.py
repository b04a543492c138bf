#!/usr/bin/env python3
"""The peer edged is measured against: the one-loop script a user would write.

uint8 BGR frame -> normalise in numpy (RGB, mean/std, NCHW) -> ONNX Runtime -> top-5 ->
one JSON line per frame, all in one thread. tools/bench_pipeline.py runs ``run`` in
alternating rounds with edged; run alone it prints its frames per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def run(model: str, hw: Sequence[int], batch: int, threads: int, seconds: float, out: str) -> Dict[str, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, size=(hw[0], hw[1], 3), dtype=np.uint8) for _ in range(8)]
    done, seq = 0, 0
    with open(out, "w", encoding="utf-8") as sink:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            chunk = [frames[(seq + i) % len(frames)] for i in range(batch)]
            x = np.stack([((f[:, :, ::-1].astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1) for f in chunk])
            scores = session.run(None, {name: x})[0]
            for row in scores.reshape(batch, -1):
                top = np.argsort(-row)[:5]
                record = {
                    "seq": seq,
                    "ts": time.time(),
                    "top_k": [{"class": int(c), "score": float(row[c])} for c in top],
                }
                sink.write(json.dumps(record) + "\n")
                seq += 1
            done += batch
        elapsed = time.perf_counter() - start
    return {"frames": done, "seconds": elapsed, "throughput_ips": done / elapsed}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--hw", type=int, nargs=2, default=[224, 224])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", default="/dev/null")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.model, args.hw, args.batch, args.threads, args.seconds, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
