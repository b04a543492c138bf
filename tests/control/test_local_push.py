"""Pushing the local file back: its local-only sections, repeated as written in the file,
change nothing and are accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import yaml

from edged.control.boot import load_effective
from edged.control.plane import ControlPlane, Message
from edged.daemon import Daemon


def test_a_full_config_repeating_the_local_file_is_applied(base_doc: Dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "broker.pass").write_text("secret\n")
    (folder / "broker.pass").chmod(0o600)
    # As an operator writes it: relative paths, defaults left out.
    base_doc["plans"] = {"cache_dir": "plans"}
    base_doc["mqtt"] = {"host": "127.0.0.1", "port": 1, "username": "dev", "password_file": "broker.pass"}
    base_doc["telemetry"] = {"period_s": 0.5}
    path = folder / "edged.yaml"
    path.write_text(yaml.safe_dump(base_doc))
    daemon = Daemon(load_effective(path).config, config_path=str(path))
    daemon.models.start()
    published = []
    plane = ControlPlane(daemon, lambda t, p, r, c: published.append(p))
    try:
        assert daemon.models.wait_started(60)
        local = yaml.safe_load(path.read_text())
        local["telemetry"]["period_s"] = 1
        body = json.dumps({"version": 2, "config": dict(local, version=2)}).encode()
        result = plane.process(Message("edged/node-1/config/set", body))
        assert result["status"] == "applied", result
        assert daemon.config.version == 2 and daemon.config.telemetry.period_s == 1
        # A real change to a local-only section is still refused.
        local["mqtt"]["port"] = 2
        body = json.dumps({"version": 3, "config": dict(local, version=3)}).encode()
        result = plane.process(Message("edged/node-1/config/set", body))
        assert result["status"] == "rejected"
        assert result["errors"] == ["mqtt: set only in the local config file; a push may not change it"]
    finally:
        daemon.models.stop()
