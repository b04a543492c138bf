"""End to end: ``edgectl push --base-url --model`` to ``edged run`` over a real broker,
the model file fetched from a real HTTPS server; progress shows in the interim
``downloading`` results, telemetry and the status lines."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from tests.control.conftest import serving_model
from tests.control.test_mqtt_control import Edged, Watcher, edgectl
from tests.fetch.conftest import sha256
from tests.fetch.server import FileServer
from tests.mqtt.broker import Mosquitto, make_ca

pytestmark = pytest.mark.slow


class RawEdged(Edged):
    """Keeps every status line, download lines included."""

    def __init__(self, config: Path) -> None:
        self.raw: List[str] = []
        super().__init__(config)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line.rstrip("\n"))


def test_edgectl_pushes_a_local_model_by_url_and_progress_is_reported(
    broker: Mosquitto, base_doc: Dict[str, Any], control_dirs: Dict[str, Path], tmp_path: Path
) -> None:
    ca = make_ca(tmp_path / "ca")
    www = tmp_path / "www"
    www.mkdir()
    local = tmp_path / "operator" / "remote.onnx"
    local.parent.mkdir()
    shutil.copy(control_dirs["models"] / "second.onnx", local)
    shutil.copy(local, www / "remote.onnx")  # the operator's upload
    base_doc["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
    base_doc["telemetry"]["period_s"] = 0.2
    base_doc["control"]["downloads"] = {"ca_file": str(ca["ca"]), "timeout_s": 5, "reserve_mb": 0}
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(base_doc))
    watcher = Watcher(broker.port)
    with FileServer(www, tls=ca) as server:
        server.chunk, server.chunk_delay_s = 1024, 0.3  # about 2 s: progress has time to show
        edged = RawEdged(config)
        try:
            watcher.wait_for("edged/node-1/config/state", lambda d: d["version"] == 1)
            push_file = tmp_path / "push.yaml"
            entry = serving_model("remote", "to be replaced by edgectl")
            push_file.write_text(yaml.safe_dump({"version": 2, "patch": {"models": [base_doc["models"][0], entry]}}))
            base_url = server.url("").rstrip("/")
            out = edgectl(
                broker.port, "push", "node-1", str(push_file), "--base-url", base_url, "--model", f"remote={local}"
            )
            assert out.returncode == 0, out.stdout + out.stderr
            shown = out.stdout.splitlines()
            assert shown[-1] == "node-1: applied version 2 (added remote)", out.stdout
            assert any(line.startswith("node-1: downloading remote path") for line in shown), out.stdout
            telemetry = watcher.wait_for("edged/node-1/telemetry", lambda d: "downloads" in d, timeout=1)
            progress = telemetry["downloads"][0]
            assert progress["model"] == "remote" and progress["url"] == server.url("remote.onnx")
            assert progress["total_bytes"] == local.stat().st_size and progress["state"] == "downloading"
            state = watcher.wait_for("edged/node-1/config/state", lambda d: d["version"] == 2)
            pushed = state["config"]["models"][1]["path"]
            assert pushed == {"url": server.url("remote.onnx"), "sha256": sha256(local), "size": local.stat().st_size}
            time.sleep(0.5)
        finally:
            edged.stop()
    assert any(line.startswith("remote: downloading path ") and " MB/s, eta " in line for line in edged.raw)
    assert any(line.startswith("remote: running on cpu fps") for line in edged.raw), edged.raw[-5:]
