"""edgectl devices and watch against a real mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from edged.ctl.session import BrokerOptions, Session
from tests.mqtt.broker import Mosquitto


def _edgectl(port: int, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "edged.ctl", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_devices_lists_retained_status_and_watch_renders_telemetry(broker: Mosquitto) -> None:
    device = Session(BrokerOptions(host="127.0.0.1", port=broker.port), client_id="fake-device")
    device.connect()
    device.publish("edged/node-1/status", json.dumps({"state": "online", "version": "0.1.0"}).encode(), retain=True)
    device.publish("edged/node-2/status", b"offline", retain=True)

    # Retained status only: node-1 claims to be online but answers no presence query.
    out = _edgectl(broker.port, "devices", "--wait", "0.5").communicate(timeout=20)[0]
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["DEVICE", "STATE", "EDGED"]
    assert lines[1].split()[:3] == ["node-1", "unanswered", "0.1.0"]
    assert lines[2].split()[:2] == ["node-2", "offline"]
    assert lines[3] == "2 devices: 1 offline, 1 unanswered"

    watch = _edgectl(broker.port, "watch", "node-1", "--count", "2")
    time.sleep(1.0)
    for fps in (29.5, 30.5):
        body = {
            "models": {"cam": {"state": "running", "device": "gpu", "fps": fps, "latency_ms": {"e2e": {"p99": 12.25}}}}
        }
        device.publish("edged/node-1/telemetry", json.dumps(body).encode(), qos=0)
        time.sleep(0.2)
    out, err = watch.communicate(timeout=20)
    device.close()
    assert watch.returncode == 0, err
    frames = out.strip().split("\n\n")
    assert len(frames) == 2  # piped: one screen per telemetry message
    first = frames[1].splitlines()[0]
    assert first.startswith("node-1 · online · edged 0.1.0") and first.endswith("last seen 0 s ago")
    header, row = frames[1].splitlines()[1:3]
    assert header.split()[:4] == ["MODEL", "STATE", "DEVICE", "FPS"]
    assert row.split() == ["cam", "running", "gpu", "30.5", "-", "12.2", "0", "-", "-"]


def test_push_without_an_answer_exits_3(broker: Mosquitto, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"version": 1, "patch": {}}')
    proc = _edgectl(broker.port, "--timeout", "1", "push", "nobody", str(tmp_path / "p.json"))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 3 and "no answer on edged/nobody/config/set" in err
