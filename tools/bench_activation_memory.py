#!/usr/bin/env python3
"""How much memory ONNX Runtime's arena holds for a model's activations, by batch.

The plans are built first, as edged builds them for that batch. Each row then runs in a
fresh process (with edged.service's MALLOC_ARENA_MAX=2): it loads the plan with edged's
session options and reports the resident memory the load added and what runs then added. "mixed" runs every batch size
from 1 to B in turn, as a model batching across sources does (a batch takes the frames at
hand); "fixed" runs batch B only. The arena keeps its peak, so the figure is what an
engine holds from then on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import ctypes, json, sys
import numpy as np
sys.path.insert(0, sys.argv[4])
from edged.backends import get_backend
from edged.backends.base import BuildOptions

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0

plan_file, batch, mixed = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "mixed"
backend = get_backend("onnxruntime")
options = BuildOptions(batch=batch)
with open(plan_file, "rb") as handle:
    plan = handle.read()
before = rss_mb()
runner = backend.load_plan(plan, options)
ctypes.CDLL(None).malloc_trim(0)
loaded = rss_mb()
del plan
ctypes.CDLL(None).malloc_trim(0)
base = rss_mb()
spec = runner.inputs[0]
sizes = list(range(1, batch + 1)) if mixed else [batch]
inputs = [np.zeros([n, *[d or 1 for d in spec.shape[1:]]], np.float32) for n in sizes]
for i in range(10 * len(sizes)):
    runner.infer({spec.name: inputs[i % len(inputs)]})
print(json.dumps({"load_mb": loaded - before, "activations_mb": rss_mb() - base}))
"""


def measure(plan_file: str, batch: int, mode: str) -> Dict[str, Any]:
    env = dict(os.environ, MALLOC_ARENA_MAX="2")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, plan_file, str(batch), mode, str(REPO)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"batch {batch} ({mode}): {out.stderr.strip()[-500:]}")
    row: Dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(batch=batch, mode=mode)
    return row


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "var/bench/mobilenetv2-shaped.onnx"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if not Path(args.model).exists():
        subprocess.run([sys.executable, str(REPO / "tools/make_bench_model.py"), "--out", args.model], check=True)
    sys.path.insert(0, str(REPO))
    from edged.backends import get_backend
    from edged.backends.base import BuildOptions

    backend = get_backend("onnxruntime")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edged-bench-activations-") as tmp:
        plans = {}
        for batch in args.batches:
            plans[batch] = str(Path(tmp) / f"b{batch}.plan")
            Path(plans[batch]).write_bytes(backend.build_plan(args.model, BuildOptions(batch=batch)).plan)
        rows = _measure_all(plans)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


def _measure_all(plans: Dict[int, str]) -> List[Dict[str, Any]]:
    rows = []
    for batch, plan_file in plans.items():
        for mode in ("mixed", "fixed") if batch > 1 else ("fixed",):
            row = measure(plan_file, batch, mode)
            rows.append(row)
            sizes = f"1..{batch}" if mode == "mixed" else str(batch)
            loaded, held = row["load_mb"], row["activations_mb"]
            print(f"batches {sizes:>5}: plan loaded {loaded:.0f} MB, activations {held:.0f} MB", flush=True)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
