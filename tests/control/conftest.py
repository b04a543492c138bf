from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from edged.config import parse_config
from edged.control.plane import ControlPlane
from edged.daemon import Daemon

Published = List[Tuple[str, bytes, bool, Optional[bytes]]]


def serving_model(name: str, path: str, fps: float = 200) -> Dict[str, Any]:
    """A model entry that serves endlessly from a paced synthetic source."""
    return {
        "name": name,
        "path": path,
        "threads": 1,
        "batch": 1,
        "source": {"type": "synthetic", "fps": fps, "size": [64, 64]},
        "postprocess": {"type": "raw"},
        "sink": {"type": "null"},
    }


@pytest.fixture()
def control_dirs(demo_assets: Path, tmp_path: Path) -> Dict[str, Path]:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(demo_assets / "demo-cnn.onnx", models / "demo-cnn.onnx")
    shutil.copy(demo_assets / "demo-cnn.onnx", models / "second.onnx")
    (models / "broken.onnx").write_bytes(b"this is not an onnx model")
    data = tmp_path / "data"
    data.mkdir()
    return {"models": models, "data": data, "state": tmp_path / "state", "outside": demo_assets}


@pytest.fixture()
def base_doc(control_dirs: Dict[str, Path], tmp_path: Path) -> Dict[str, Any]:
    return {
        "version": 1,
        "device": {"id": "node-1", "groups": ["lab"]},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "telemetry": {"period_s": 0.5},
        "control": {
            "state_dir": str(control_dirs["state"]),
            "model_dirs": [str(control_dirs["models"])],
            "data_dirs": [str(control_dirs["data"])],
        },
        "models": [serving_model("base", str(control_dirs["models"] / "demo-cnn.onnx"))],
    }


class Harness:
    """A daemon serving real ONNX Runtime pipelines with a control plane whose published
    messages are collected instead of sent."""

    def __init__(self, doc: Dict[str, Any]) -> None:
        self.published: Published = []
        self.daemon = Daemon(parse_config(doc))
        self.daemon.models.start()
        assert self.daemon.models.wait_started(60), "the first models did not start"
        self.plane = ControlPlane(self.daemon, lambda t, p, r, c: self.published.append((t, p, r, c)))
        self.plane.start()
        assert [t for t, *_ in self.published] == ["edged/node-1/config/state"]
        self.published.clear()

    def close(self) -> None:
        self.plane.stop()
        self.daemon.models.stop()


@pytest.fixture()
def harness(base_doc: Dict[str, Any]) -> Iterator[Harness]:
    h = Harness(base_doc)
    yield h
    h.close()


class CounterSampler:
    """Samples a frame counter every 20 ms while pushes are applied, and finds its longest
    stall (the longest time it did not grow)."""

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read
        self.samples: List[Tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.samples.append((time.monotonic(), self._read()))

    def __enter__(self) -> "CounterSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._thread.join()

    def longest_stall_s(self) -> float:
        longest, since = 0.0, self.samples[0][0]
        for (_, a), (t, b) in zip(self.samples, self.samples[1:]):
            if b > a:
                since = t
            longest = max(longest, t - since)
        return longest
