"""One ordered queue for config changes: a reload never rolls a newer push back, and
"applied" means in effect (or says which keys wait for the next start)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from edged.config import load_config, parse_config
from edged.control.plane import ControlPlane, Message
from edged.control.store import ConfigStore
from edged.daemon import Daemon
from edged.plans import build_process
from tests.faults.conftest import model, wait_until

pytestmark = pytest.mark.slow

Published = List[Tuple[str, bytes, bool, Optional[bytes]]]


def _push(plane: ControlPlane, document: Dict[str, Any], version: int) -> None:
    body = json.dumps({"id": f"v{version}", "version": version, "config": document}).encode()
    plane.submit(Message("edged/node-1/config/set", body))


def _results(published: Published) -> List[Dict[str, Any]]:
    return [json.loads(p) for t, p, _, _ in published if t.endswith("/config/result")]


def test_a_sighup_racing_a_push_never_rolls_it_back(
    config_file: Callable[..., Path], demo_assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx = demo_assets / "demo-cnn.onnx"
    path = config_file(model("base", onnx), version=1)
    daemon = Daemon(load_config(path), config_path=str(path))
    daemon.models.start()
    assert daemon.models.wait_started(60)
    published: Published = []
    plane = ControlPlane(daemon, lambda t, p, r, c: published.append((t, p, r, c)))
    plane.start()
    build = build_process.build_in_child

    def slow_build(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)  # the push is still building when SIGHUP arrives
        return build(*args, **kwargs)

    monkeypatch.setattr(build_process, "build_in_child", slow_build)
    try:
        pushed = dict(daemon.config.document, version=70)
        pushed["models"] = [model("base", onnx), model("pushed", onnx)]
        _push(plane, json.loads(json.dumps(pushed)), 70)
        time.sleep(0.15)
        daemon._handle_reload_request()  # what the main loop does on SIGHUP
        wait_until(lambda: _results(published), 30)
        daemon.changes.run("barrier", lambda: None)  # everything queued before has run
        assert daemon.config.version == 70 and "pushed" in daemon.models.slots
        record = ConfigStore(str(path.parent / "state")).load()
        assert record is not None and record["version"] == 70
        # Replay protection still holds: an older push is refused.
        _push(plane, json.loads(json.dumps(dict(pushed, version=3))), 3)
        wait_until(lambda: len(_results(published)) == 2, 30)
        assert _results(published)[1]["status"] == "rejected" and daemon.config.version == 70
    finally:
        plane.stop()
        daemon.models.stop()


def test_a_reload_refuses_to_go_back_in_version(config_file: Callable[..., Path], demo_assets: Path) -> None:
    onnx = demo_assets / "demo-cnn.onnx"
    path = config_file(model("base", onnx), version=5)
    daemon = Daemon(load_config(path), config_path=str(path))
    daemon.models.start()
    assert daemon.models.wait_started(60)
    try:
        config_file(model("base", onnx), version=4)
        with pytest.raises(Exception, match=r"version 4 \(file\), older than version 5 in force"):
            daemon.reload()
        assert daemon.config.version == 5
    finally:
        daemon.models.stop()


def test_applied_telemetry_settings_take_effect_and_the_rest_says_restart(
    config_file: Callable[..., Path], demo_assets: Path, broker: Any
) -> None:
    from tests.mqtt.observer import Observer

    onnx = demo_assets / "demo-cnn.onnx"
    mqtt = {"host": "127.0.0.1", "port": broker.port}
    path = config_file(model("base", onnx), telemetry={"period_s": 2.0}, mqtt=mqtt)
    daemon = Daemon(load_config(path), config_path=str(path))
    observer = Observer(broker.port, "edged/node-1/telemetry")
    control = daemon.start_telemetry()
    daemon.models.start()
    try:
        assert daemon.models.wait_started(60)
        doc = json.loads(json.dumps(dict(daemon.config.document)))
        doc["version"] = 2
        doc["telemetry"]["period_s"] = 0.25
        changes = daemon.apply_config(parse_config(doc))
        assert changes.restart_required == []
        start = len(observer.payloads("edged/node-1/telemetry"))
        time.sleep(2.0)
        # 2 s at the pushed 0.25 s period: about 8 messages, where the old 2 s period gave 1.
        assert len(observer.payloads("edged/node-1/telemetry")) - start >= 5
        doc["version"] = 3
        doc["telemetry"]["window_s"] = 60
        doc["mqtt"]["keepalive_s"] = 45
        assert daemon.apply_config(parse_config(doc)).restart_required == ["mqtt", "telemetry.window_s"]
    finally:
        if control is not None:
            control.stop()
        daemon.models.stop()
        assert daemon.telemetry is not None
        daemon.telemetry.stop()
        observer.close()
