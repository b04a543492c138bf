from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from edged.config import parse_config
from edged.daemon import Daemon
from edged.telemetry.snapshot import Snapshotter
from tests.mqtt.broker import free_port

SERVER = Path(__file__).with_name("rtsp_server.py")


def _serve(port: int) -> "subprocess.Popen[str]":
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_rtsp_outage_is_reconnected_reported_and_harmless_to_other_models(tmp_path: Path, demo_assets: Path) -> None:
    port = free_port()
    model: Dict[str, Any] = {"path": str(demo_assets / "demo-cnn.onnx"), "threads": 1, "preprocess": {"size": [64, 64]}}
    doc = {
        "device": {"id": "media"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "models": [
            dict(
                model,
                name="cam",
                source={"type": "rtsp", "url": f"rtsp://127.0.0.1:{port}/cam", "latency_ms": 0, "retry_max_s": 1},
            ),
            dict(model, name="other", source={"type": "synthetic", "fps": 30, "size": [64, 64]}),
        ],
    }
    server = _serve(port)
    daemon = Daemon(parse_config(doc))
    runner = threading.Thread(target=daemon.run, kwargs={"duration_s": 120}, daemon=True)
    runner.start()
    try:
        assert daemon.models.wait_started(30)
        cam = daemon.models.slots["cam"].pipeline
        other = daemon.models.slots["other"].pipeline
        assert cam is not None and other is not None
        assert _wait(lambda: cam.stats.counters()["frames_out"] > 30, 30), cam.source.status()  # type: ignore[attr-defined]

        server.kill()
        server.wait()
        before = other.stats.counters()["frames_out"]
        outage_start = time.monotonic()
        assert _wait(lambda: cam.source.status()["state"] == "reconnecting", 15)  # type: ignore[attr-defined]
        time.sleep(max(0.0, 10 - (time.monotonic() - outage_start)))
        other_fps = (other.stats.counters()["frames_out"] - before) / (time.monotonic() - outage_start)
        views = daemon.snapshot().models
        telemetry = Snapshotter("media", None, None, 30).snapshot(views)
        assert telemetry["models"]["cam"]["source"]["state"] == "reconnecting"
        assert telemetry["models"]["cam"]["source"]["outage_s"] >= 9

        server = _serve(port)
        served = cam.stats.counters()["frames_out"]
        assert _wait(lambda: cam.stats.counters()["frames_out"] > served + 30, 30), cam.source.status()  # type: ignore[attr-defined]
        status = cam.source.status()  # type: ignore[attr-defined]
        assert status["state"] == "running" and status["reconnects"] >= 1 and status["outages"] == 1
        assert 25 <= other_fps <= 35, other_fps  # the synthetic model ran at its 30 fps throughout
    finally:
        daemon.stop_event.set()
        runner.join(15)
        server.kill()
        server.wait()
