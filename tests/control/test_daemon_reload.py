"""The real ``edged run`` process: SIGHUP reloads the file; a restart layers the
persisted push on the file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from edged.config import parse_config
from edged.control.store import ConfigStore
from tests.control.conftest import serving_model

pytestmark = pytest.mark.slow


def _wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 15.0) -> List[str]:  # type: ignore[type-arg]
    seen: List[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f"no line starting {prefix!r} in {seen}")


def _start(config_path: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sighup_reloads_the_file_and_survives_a_broken_one(
    base_doc: Dict[str, Any], control_dirs: Dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(base_doc))
    proc = _start(path)
    try:
        _wait_for_line(proc, "base: running")
        path.write_text("models: [")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        base_doc["models"].append(serving_model("extra", str(control_dirs["models"] / "second.onnx")))
        path.write_text(yaml.safe_dump(base_doc))
        proc.send_signal(signal.SIGHUP)
        _wait_for_line(proc, "extra: running")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "reload failed, previous config stays in force" in err and "invalid YAML" in err


def test_a_restart_comes_up_with_the_persisted_push(
    base_doc: Dict[str, Any], control_dirs: Dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(base_doc))
    pushed = dict(parse_config(base_doc).document)
    pushed["version"] = 7
    pushed["models"] = [serving_model("pushed", str(control_dirs["models"] / "second.onnx"))]
    ConfigStore(base_doc["control"]["state_dir"]).save(json.loads(json.dumps(pushed)), 7, "digest")
    out = subprocess.run(
        [sys.executable, "-m", "edged", "run", "--config", str(path), "--duration", "1.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "pushed: " in out.stdout and "base: " not in out.stdout
    # Raising the file's version above the push makes the file win again.
    base_doc["version"] = 8
    path.write_text(yaml.safe_dump(base_doc))
    out = subprocess.run(
        [sys.executable, "-m", "edged", "run", "--config", str(path), "--duration", "1.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "base: " in out.stdout and "pushed: " not in out.stdout
