#!/usr/bin/env python3
"""Benchmark a config push on this machine: how long applying takes, and whether a model
the push leaves untouched ever stops producing output during the switch.

A daemon serves the demo CNN ("steady", synthetic source at --fps) with real ONNX Runtime;
each round pushes a patch that adds a second model and then one that removes it, through
the control plane (validation, build, start, persist, switch, drain). A sampler reads
the steady model's output counter every millisecond. Prints JSON: per-round apply time
and the longest gap between two outputs of the steady model during each push, next to
its frame period (a gap close to the period means the push cost it nothing).

    python tools/bench_config_push.py --rounds 10 --fps 100
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


def _model(name: str, path: str, fps: float) -> Dict[str, Any]:
    return {
        "name": name,
        "path": path,
        "threads": 1,
        "batch": 1,
        "source": {"type": "synthetic", "fps": fps, "size": [64, 64]},
        "postprocess": {"type": "raw"},
        "sink": {"type": "null"},
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--fps", type=float, default=100.0, help="frame rate of the untouched model")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_demo_model

    from edged.config import parse_config
    from edged.control.plane import ControlPlane, Message
    from edged.daemon import Daemon

    work = Path(tempfile.mkdtemp(prefix="edged-bench-push-"))
    try:
        models = work / "models"
        make_demo_model.main(["--out", str(models)])
        path = str(models / "demo-cnn.onnx")
        steady = _model("steady", path, args.fps)
        doc = {
            "version": 1,
            "device": {"id": "bench"},
            "plans": {"cache_dir": str(work / "plans")},
            "control": {"state_dir": str(work / "state"), "model_dirs": [str(models)], "data_dirs": [str(work)]},
            "models": [steady],
        }
        daemon = Daemon(parse_config(doc))
        daemon.models.start()
        plane = ControlPlane(daemon, lambda *a: None)
        out_times: List[float] = []
        stop = threading.Event()

        def sample() -> None:
            last = -1
            while not stop.wait(0.001):
                pipeline = daemon.models.slots["steady"].pipeline
                count = int(pipeline.stats.counters()["frames_out"]) if pipeline else 0
                if count != last:
                    out_times.append(time.perf_counter())
                    last = count

        sampler = threading.Thread(target=sample)
        sampler.start()
        time.sleep(1.0)
        rounds = []
        version = 1
        for _ in range(args.rounds):
            for models_list, label in (([steady, _model("extra", path, 30)], "add"), ([steady], "remove")):
                version += 1
                raw = json.dumps({"version": version, "patch": {"models": models_list}}).encode()
                start = time.perf_counter()
                result = plane.process(Message("edged/bench/config/set", raw))
                end = time.perf_counter()
                assert result["status"] == "applied", result
                time.sleep(0.2)
                window = [t for t in out_times if start - 0.1 <= t <= end + 0.1]
                gap = max((b - a for a, b in zip(window, window[1:])), default=float("inf"))
                rounds.append({"push": label, "apply_ms": (end - start) * 1000, "steady_max_gap_ms": gap * 1000})
        stop.set()
        sampler.join()
        daemon.models.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def summary(key: str, label: str) -> Dict[str, float]:
        values = [r[key] for r in rounds if r["push"] == label]
        return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}

    report = {
        "rounds": args.rounds,
        "steady_fps": args.fps,
        "steady_frame_period_ms": round(1000 / args.fps, 1),
        "apply_ms": {"add": summary("apply_ms", "add"), "remove": summary("apply_ms", "remove")},
        "steady_max_gap_ms": {
            "add": summary("steady_max_gap_ms", "add"),
            "remove": summary("steady_max_gap_ms", "remove"),
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
