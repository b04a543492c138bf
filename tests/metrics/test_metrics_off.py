"""With the metrics off, no port is opened and nothing of them is imported; with them on,
the same probe sees both (so the probe can tell)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

from tests.metrics.daemon import REPO, models, write_config
from tests.mqtt.broker import free_port


def _probe(config: Path) -> Dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.metrics.off_probe", str(config)],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        timeout=60,
        check=True,
    ).stdout
    result: Dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_metrics_off_opens_no_port_and_imports_nothing(tmp_path: Path, demo_assets: Path) -> None:
    config = write_config(tmp_path, {"models": models(demo_assets, tmp_path, ["cam"])})
    assert _probe(config) == {"modules": [], "listening": []}


def test_metrics_on_listens_on_the_configured_loopback_port(tmp_path: Path, demo_assets: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path, {"metrics": {"http": True, "port": port}, "models": models(demo_assets, tmp_path, ["cam"])}
    )
    probe = _probe(config)
    assert probe["listening"] == [f"0100007F:{port:04X}"]  # 127.0.0.1, the default address
    assert "prometheus_client" in probe["modules"] and "edged.metrics.service" in probe["modules"]
