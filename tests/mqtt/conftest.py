from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.mqtt.broker import Mosquitto


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "broker").start()
    yield server
    server.stop()
