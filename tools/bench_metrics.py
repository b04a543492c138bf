#!/usr/bin/env python3
"""CPU cost of the Prometheus endpoint: 8 models at 30 fps, scraped over HTTP.

Eight models' statistics are filled as 30 fps pipelines fill them (every stage recorded per
frame over the 30 s window, which also fills the cumulative buckets); then a separate process
scrapes http://127.0.0.1:<port>/metrics N times, as Prometheus would. This process's CPU
time (snapshot, power and health readers, exposition, HTTP serving; the scraper's own CPU
is its own process's) per scrape, at one scrape every 5 s, is the share of one core.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_telemetry import ORIN, filled_stats  # noqa: E402

from edged.config import parse_config  # noqa: E402
from edged.metrics.service import MetricsService  # noqa: E402
from edged.model_state import ModelState, RunningState, counters_of, latency_summaries, latency_totals  # noqa: E402
from tests.mqtt.broker import free_port  # noqa: E402

_SCRAPER = """
import sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
size = 0
for _ in range(n):
    with urllib.request.urlopen(url) as response:
        size = len(response.read())
print(size)
"""


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--interval-s", type=float, default=5.0, help="scrape interval the share is given for")
    args = parser.parse_args(argv)
    port = free_port()
    config = parse_config(
        {
            "device": {"id": "bench"},
            "models": [],
            "metrics": {"http": True, "port": port},
            "telemetry": {"root": str(ORIN)},
        }
    )
    stats = {f"model{i}": filled_stats(args.fps, 30.0, dropped=3) for i in range(args.models)}

    def snapshot() -> RunningState:
        # As the model set snapshots them: counters, windowed latencies, cumulative buckets.
        now = time.monotonic()
        models: Dict[str, ModelState] = {
            name: ModelState(
                name,
                "-",
                "gpu",
                4,
                "running",
                counters=counters_of(s),
                latency_ms=latency_summaries(s, now),
                latency_totals=latency_totals(s),
            )
            for name, s in stats.items()
        }
        return RunningState(config, "file", None, now, models, plan_builds={"built": args.models, "failed": 0})

    service = MetricsService(config, snapshot, None)
    service.start()
    url = f"http://127.0.0.1:{port}/metrics"
    subprocess.run([sys.executable, "-c", _SCRAPER, url, "3"], check=True, capture_output=True)  # warm up
    wall0, cpu0 = time.perf_counter(), time.process_time()
    scraped = subprocess.run(
        [sys.executable, "-c", _SCRAPER, url, str(args.scrapes)], check=True, capture_output=True, text=True
    )
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    service.stop()
    per_scrape_ms = cpu / args.scrapes * 1000.0
    report = {
        "models": args.models,
        "fps": args.fps,
        "scrapes": args.scrapes,
        "cpu_ms_per_scrape": round(per_scrape_ms, 2),
        "wall_ms_per_scrape": round(wall / args.scrapes * 1000.0, 2),
        "response_bytes": int(scraped.stdout.strip()),
        f"one_core_pct_at_{args.interval_s:g}s": round(per_scrape_ms / 1000.0 / args.interval_s * 100.0, 3),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
