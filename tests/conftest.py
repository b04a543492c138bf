"""Shared fixtures: the synthetic demo model (written once per test session) and a broker."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator

import pytest

if TYPE_CHECKING:
    from tests.mqtt.broker import Mosquitto
    from tests.notify import NotifyListener

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


@pytest.fixture(autouse=True)
def _cuda_double_starts_on_device_0() -> None:
    """The CUDA double keeps each thread's current device, as CUDA does; a test that left the
    main thread on gpu1 must not move the next test's engines there. Tests that never
    imported the double do not pay for importing it here."""
    memory = sys.modules.get("tests.trt_double.memory")
    if memory is not None:
        memory.reset_current_device()


@pytest.fixture(scope="session")
def demo_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with demo-cnn.onnx, labels.txt and images/ (see tools/make_demo_model.py)."""
    import make_demo_model

    out = tmp_path_factory.mktemp("demo")
    assert make_demo_model.main(["--out", str(out)]) == 0
    return out


@pytest.fixture()
def demo_config(demo_assets: Path, tmp_path: Path) -> Dict[str, Any]:
    """A valid config document serving the demo model from a synthetic source."""
    return {
        "device": {"id": "test-node"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "telemetry": {"period_s": 0.5},
        "models": [
            {
                "name": "demo",
                "path": str(demo_assets / "demo-cnn.onnx"),
                "threads": 1,
                "batch": 4,
                "source": {"type": "synthetic", "fps": 0, "count": 40, "size": [64, 64]},
                "postprocess": {"type": "raw"},
                "sink": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")},
            }
        ],
    }


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator["Mosquitto"]:
    """A real mosquitto of its own for the test, on a free port (tests/mqtt/broker.py)."""
    from tests.mqtt.broker import Mosquitto

    server = Mosquitto(tmp_path / "broker").start()
    yield server
    server.stop()


@pytest.fixture()
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    """systemd's end of NOTIFY_SOCKET at tmp_path/notify.sock, collecting every message."""
    from tests.notify import NotifyListener

    lst = NotifyListener(str(tmp_path / "notify.sock"))
    yield lst
    lst.close()
