#!/usr/bin/env python3
"""Start-to-first-result time of `edged run`, cold (empty plan cache) and warm (plans cached).

Runs configs/demo.yaml (or --config) in a scratch copy whose plan cache and sinks live in
a temporary folder, and times from process spawn to the first result line in any sink.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

REPO = Path(__file__).resolve().parents[1]


def scratch_config(source: Path, folder: Path) -> Path:
    doc = yaml.safe_load(source.read_text())
    base = source.resolve().parent
    doc["plans"] = {"cache_dir": str(folder / "plans")}
    for model in doc["models"]:
        model["path"] = str((base / model["path"]).resolve())
        for section, key in (("source", "path"), ("postprocess", "labels")):
            if key in model.get(section, {}):
                model[section][key] = str((base / model[section][key]).resolve())
        model["sink"] = {"type": "jsonl", "path": str(folder / f"{model['name']}.jsonl")}
    path = folder / "edged.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def time_to_first_result(config: Path, folder: Path, timeout: float = 60.0) -> float:
    for sink in folder.glob("*.jsonl"):
        sink.unlink()
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=str(REPO),
    )
    try:
        while time.monotonic() - start < timeout:
            if any(p.stat().st_size > 0 for p in folder.glob("*.jsonl")):
                return time.monotonic() - start
            if proc.poll() is not None:
                raise RuntimeError(f"edged exited with {proc.returncode} before any result")
            time.sleep(0.005)
        raise RuntimeError("no result before the timeout")
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--runs", type=int, default=5, help="warm runs (median reported)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edged-warm-") as tmp:
        folder = Path(tmp)
        config = scratch_config(Path(args.config), folder)
        cold = time_to_first_result(config, folder)
        warm = [time_to_first_result(config, folder) for _ in range(args.runs)]
    report: Dict[str, Any] = {"cold_s": cold, "warm_s": warm, "warm_median_s": statistics.median(warm)}
    print(
        f"cold start to first result: {cold:.2f} s; warm: median {report['warm_median_s']:.2f} s over {args.runs} runs"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
