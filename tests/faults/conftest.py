"""An in-process daemon serving real ONNX Runtime models, run on its own thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import pytest
import yaml

from edged.config import load_config
from edged.daemon import Daemon


def model(name: str, path: Path, fps: float = 30, **extra: Any) -> Dict[str, Any]:
    entry = {
        "name": name,
        "path": str(path),
        "threads": 1,
        "batch": 1,
        "source": {"type": "synthetic", "fps": fps, "size": [64, 64]},
        "postprocess": {"type": "raw"},
        "sink": {"type": "null"},
    }
    entry.update(extra)
    return entry


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


class Running:
    """``daemon.run()`` on a thread; ``stop()`` drains it."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.thread = threading.Thread(target=daemon.run, name="test-daemon", daemon=True)

    def start(self) -> "Running":
        self.thread.start()
        wait_until(
            lambda: not self.daemon.models.building and all(s.pipeline for s in self.daemon.models.slots.values())
        )
        return self

    def frames_out(self, name: str) -> int:
        pipeline = self.daemon.models.slots[name].pipeline
        return int(pipeline.stats.counters()["frames_out"]) if pipeline else 0

    def stop(self) -> None:
        self.daemon.stop_event.set()
        self.thread.join(20)


@pytest.fixture()
def config_file(demo_assets: Path, tmp_path: Path) -> Callable[..., Path]:
    """Writes a config serving the given model entries; returns its path."""

    def write(*models: Dict[str, Any], version: int = 1, **sections: Any) -> Path:
        doc: Dict[str, Any] = {
            "version": version,
            "device": {"id": "node-1"},
            "plans": {"cache_dir": str(tmp_path / "plans")},
            "telemetry": {"period_s": 0.5},
            "control": {
                "state_dir": str(tmp_path / "state"),
                "model_dirs": [str(demo_assets)],
                "data_dirs": [str(tmp_path)],
            },
            "models": list(models),
        }
        doc.update(sections)
        path = tmp_path / "edged.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    return write


@pytest.fixture()
def running(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], Running]]:
    started: Dict[str, Optional[Running]] = {"run": None}

    def start(path: Path, hook: Optional[Callable[[Any], None]] = None) -> Running:
        daemon = Daemon(load_config(path), config_path=str(path))
        if hook is not None:
            daemon.models.pipeline_hooks.append(hook)
        started["run"] = Running(daemon).start()
        return started["run"]

    yield start
    if started["run"] is not None:
        started["run"].stop()
