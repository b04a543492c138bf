"""End to end against a real mosquitto: ``edged run`` takes pushes from ``edgectl``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import yaml

from edged.ctl.session import BrokerOptions, Session
from tests.control.conftest import serving_model
from tests.mqtt.broker import Mosquitto

pytestmark = pytest.mark.slow

STATUS = re.compile(r"^(\S+): (\S+) .* out (\d+) ")


class Edged:
    """``edged run`` as a subprocess; its status lines (every 0.2 s) are collected."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.lines: List[Tuple[float, str, int]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            match = STATUS.match(line)
            if match:
                self.lines.append((time.monotonic(), match.group(1), int(match.group(3))))

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        return err


class Watcher:
    """A test-side MQTT session collecting every message under edged/#."""

    def __init__(self, port: int) -> None:
        self.session = Session(BrokerOptions(host="127.0.0.1", port=port), client_id="test-watcher")
        self.session.connect()
        self.session.subscribe("edged/#")
        self.seen: List[Tuple[str, Any]] = []

    def wait_for(self, topic: str, predicate: Any = lambda doc: True, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        for seen_topic, doc in self.seen:
            if seen_topic == topic and predicate(doc):
                return doc
        while time.monotonic() < deadline:
            try:
                msg = self.session.messages.get(timeout=0.1)
            except Exception:
                continue
            try:
                doc = json.loads(msg.payload)
            except ValueError:
                doc = msg.payload
            self.seen.append((msg.topic, doc))
            if msg.topic == topic and predicate(doc):
                return doc
        raise AssertionError(f"nothing matching on {topic} within {timeout}s; seen {[t for t, _ in self.seen]}")


def edgectl(port: int, *args: str, timeout: float = 30) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "edged.ctl", "--host", "127.0.0.1", "--port", str(port), "--timeout", "15", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_pushes_over_mqtt_end_to_end(
    broker: Mosquitto, base_doc: Dict[str, Any], control_dirs: Dict[str, Path], tmp_path: Path
) -> None:
    base_doc["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
    base_doc["telemetry"]["period_s"] = 0.2
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(base_doc))
    watcher = Watcher(broker.port)
    edged: Optional[Edged] = Edged(config)
    try:
        assert edged is not None
        watcher.wait_for("edged/node-1/config/state", lambda d: d["version"] == 1)
        time.sleep(1.0)

        # 1. A push adding a model: applied, the new model serves, the old never stalls.
        added = serving_model("added", str(control_dirs["models"] / "second.onnx"))
        push_file = tmp_path / "add.json"
        push_file.write_text(json.dumps({"version": 2, "patch": {"models": [base_doc["models"][0], added]}}))
        pushed_at = time.monotonic()
        out = edgectl(broker.port, "push", "node-1", str(push_file))
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith("node-1: applied version 2 (added added)"), out.stdout
        state = watcher.wait_for("edged/node-1/config/state", lambda d: d["version"] == 2)
        assert state["source"] == "pushed" and set(state["models"]) == {"base", "added"}
        time.sleep(1.0)
        base_outs = [(t, n) for t, name, n in edged.lines if name == "base" and t >= pushed_at - 0.5]
        assert len(base_outs) >= 5
        assert all(b > a for (_, a), (_, b) in zip(base_outs, base_outs[1:])), base_outs
        assert any(name == "added" and n > 0 for _, name, n in edged.lines)

        # 2. A rejected push names its cause and changes nothing (MQTT 3.1.1: matched by id).
        bad = dict(added, name="bad", path=f"{control_dirs['models']}/../models/second.onnx")
        push_file.write_text(json.dumps({"version": 3, "patch": {"models": [base_doc["models"][0], bad]}}))
        out = edgectl(broker.port, "--mqtt-version", "3.1.1", "push", "node-1", str(push_file))
        assert out.returncode == 1 and "node-1: rejected version 3" in out.stdout
        assert "models[1].path" in out.stdout and "'..' is not allowed" in out.stdout

        # 3. Two quick pushes: both acknowledged, the higher version wins.
        quick = Session(BrokerOptions(host="127.0.0.1", port=broker.port), client_id="test-quick")
        quick.connect()
        for version, period in ((3, 0.3), (4, 0.25)):
            body = {"version": version, "id": f"q{version}", "patch": {"telemetry": {"period_s": period}}}
            quick.publish("edged/group/lab/config/set", json.dumps(body).encode())
        for version in (3, 4):
            result = watcher.wait_for("edged/node-1/config/result", lambda d, v=version: d.get("id") == f"q{v}")
            assert result["status"] == "applied"
        state = watcher.wait_for("edged/node-1/config/state", lambda d: d["version"] == 4)
        assert state["config"]["telemetry"]["period_s"] == 0.25

        # 4. A push sent while the broker restarts is applied once, when delivered.
        broker.stop()
        body = {"version": 5, "id": "during-restart", "patch": {"telemetry": {"period_s": 0.2}}}
        quick.publish("edged/node-1/config/set", json.dumps(body).encode(), wait_s=0)
        time.sleep(1.0)
        broker.start()
        result = watcher.wait_for("edged/node-1/config/result", lambda d: d.get("id") == "during-restart", 30)
        assert result["status"] == "applied"
        time.sleep(1.5)
        quick.close()
        applied = [d for t, d in watcher.seen if t.endswith("config/result") and d.get("id") == "during-restart"]
        assert [d["status"] for d in applied if d["status"] == "applied"] == ["applied"]

        # 5. A snapshot command answers on the MQTT 5 response topic with correlation data.
        asker = Session(BrokerOptions(host="127.0.0.1", port=broker.port), client_id="test-asker")
        asker.connect()
        asker.subscribe("test/reply")
        time.sleep(0.2)
        asker.publish("edged/node-1/cmd/snapshot", b'{"id": "s"}', response_topic="test/reply", correlation_data=b"c1")
        reply = asker.messages.get(timeout=15)
        asker.close()
        assert reply.topic == "test/reply" and reply.correlation_data == b"c1"
        assert json.loads(reply.payload)["models"]["added"]["state"] == "running"

        out = edgectl(broker.port, "cmd", "node-1", "rebuild-plans", "--models", "added")
        assert out.returncode == 0 and json.loads(out.stdout)["changes"]["changed"] == ["added"], out.stdout
        out = edgectl(broker.port, "cmd", "node-1", "rebuild-plans", "--models", "ghost")
        assert out.returncode == 1 and "unknown model(s) ['ghost']" in out.stdout

        # 6. A group push through edgectl, waiting for the one member.
        push_file.write_text(json.dumps({"patch": {"telemetry": {"period_s": 0.2}}}))
        out = edgectl(broker.port, "push", "--group", "lab", str(push_file), "--version", "6", "--expect", "1")
        assert out.returncode == 0 and out.stdout.startswith("node-1: applied version 6"), out.stdout + out.stderr

        # 7. A restarted edged comes up with the pushed config.
        edged.stop()
        edged = None
        watcher.seen.clear()
        restarted = time.time()
        edged = Edged(config)
        state = watcher.wait_for("edged/node-1/config/state", lambda d: d["ts"] > restarted)
        assert state["version"] == 6 and state["source"] == "pushed"
        time.sleep(1.5)
        assert {name for _, name, _ in edged.lines} == {"base", "added"}
        assert edged.proc.poll() is None
    finally:
        watcher.session.close()
        if edged is not None:
            edged.stop()
