"""kill -9 during a download at start-up, then a restart: the download resumes where it
stopped and the model serves; no partial or wrong file ever lies under a store name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import pytest
import yaml

from edged.fetch.fetcher import PARTIAL_DIR
from tests.fetch.conftest import sha256
from tests.fetch.server import FileServer

REPO = Path(__file__).resolve().parents[2]


def _run(config: Path, duration: float) -> "subprocess.Popen[str]":
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", str(config), "--duration", str(duration)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_kill_9_mid_download_then_restart_resumes_and_serves(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    out = tmp_path / "data" / "out.jsonl"
    out.parent.mkdir()
    digest = sha256(served / "demo-cnn.onnx")
    doc = {
        "device": {"id": "node-1"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "telemetry": {"period_s": 0.5},
        "control": {
            "state_dir": str(tmp_path / "state"),
            "model_dirs": [str(models)],
            "downloads": {"ca_file": str(ca["ca"]), "timeout_s": 2, "retries": 3, "backoff_s": 0.05, "reserve_mb": 0},
        },
        "models": [
            {
                "name": "remote",
                "path": {"url": server.url("demo-cnn.onnx"), "sha256": digest},
                "threads": 1,
                "source": {"type": "synthetic", "fps": 0, "count": 20, "size": [64, 64]},
                "sink": {"type": "jsonl", "path": str(out)},
            }
        ],
    }
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(doc))
    final, partial = models / "store" / digest, models / "store" / PARTIAL_DIR / digest
    server.chunk, server.chunk_delay_s = 256, 0.1  # about 3 s for the whole file

    first = _run(config, 60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 1024):
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    kept = partial.stat().st_size
    assert 1024 <= kept < (served / "demo-cnn.onnx").stat().st_size
    assert not final.exists()  # a partial file never lies where the model is read

    server.chunk_delay_s = 0.0
    second = _run(config, 60)
    _, err = second.communicate(timeout=90)
    assert second.returncode == 0, err
    assert server.requests[-1] == ("/demo-cnn.onnx", f"bytes={kept}-")  # resumed, not started over
    assert sha256(final) == digest and not partial.exists()
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == 20
