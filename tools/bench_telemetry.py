#!/usr/bin/env python3
"""CPU cost of telemetry: snapshot + JSON + MQTT publish for 4 models at 30 fps, 1 Hz.

Four models' statistics are filled as 30 fps pipelines fill them (every stage recorded
per frame over the 30 s window); then the publisher runs N times against a real
mosquitto on loopback. The process CPU time spent (snapshot thread and network thread
together) per message, times 1 message per second, is the share of one core.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edged.config import parse_config  # noqa: E402
from edged.model_state import ModelState, counters_of, latency_summaries  # noqa: E402
from edged.mqtt import MqttLink  # noqa: E402
from edged.pipeline.stats import STAGES, ModelStats  # noqa: E402
from edged.telemetry.health import HealthReader, discover_health  # noqa: E402
from edged.telemetry.power import PowerReader, discover_power  # noqa: E402
from edged.telemetry.publisher import TelemetryPublisher  # noqa: E402
from edged.telemetry.snapshot import Snapshotter  # noqa: E402
from tests.mqtt.broker import Mosquitto  # noqa: E402

ORIN = REPO / "tests" / "fixtures" / "jetson" / "agx-orin-64gb-jp6.2"


def filled_stats(fps: int, window_s: float, dropped: int = 0) -> ModelStats:
    """A model's stats as after ``window_s`` at ``fps``: every stage's latencies recorded."""
    stats = ModelStats(window_s=window_s)
    now = time.monotonic()
    frames = int(fps * window_s)
    for i in range(frames):
        t = now - window_s + i / fps
        for stage in STAGES:
            stats.latency[stage].record(random.lognormvariate(1.0, 0.5), t)
    stats.count_in(frames + dropped)
    stats.count_out(frames)
    if dropped:
        stats.count_drop("queue_full", dropped)
    return stats


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        try:
            doc = {"device": {"id": "bench"}, "models": [], "mqtt": {"host": "127.0.0.1", "port": broker.port}}
            config = parse_config(doc)
            assert config.mqtt is not None
            link = MqttLink(config.mqtt, "bench")
            link.start()
            assert link.wait_connected(10)
            stats = {f"model{i}": filled_stats(args.fps, 30.0) for i in range(args.models)}

            def models() -> Dict[str, ModelState]:
                # As the model set snapshots them each period: counters and windowed latencies.
                now = time.monotonic()
                return {
                    name: ModelState(
                        name, "-", "gpu", 4, "running", counters=counters_of(s), latency_ms=latency_summaries(s, now)
                    )
                    for name, s in stats.items()
                }

            snapshotter = Snapshotter(
                "bench", PowerReader(discover_power(str(ORIN))), HealthReader(discover_health(str(ORIN))), 30.0
            )
            publisher = TelemetryPublisher(link, snapshotter, models, period_s=1.0)
            publisher.publish_once()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(args.messages):
                publisher.publish_once()
            deadline = time.monotonic() + 10
            while link.pending() and time.monotonic() < deadline:
                time.sleep(0.001)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            link.stop()
        finally:
            broker.stop()
    per_message_ms = cpu / args.messages * 1000.0
    report = {
        "models": args.models,
        "fps": args.fps,
        "messages": args.messages,
        "cpu_ms_per_message": per_message_ms,
        "wall_ms_per_message": wall / args.messages * 1000.0,
        "payload_bytes": len(json.dumps(publisher.last)),
        "one_core_pct_at_1hz": per_message_ms / 1000.0 * 100.0,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
