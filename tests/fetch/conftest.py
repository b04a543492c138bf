from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from edged.config.sources import RemoteFile
from tests.fetch.server import FileServer
from tests.mqtt.broker import make_ca


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    return make_ca(tmp_path_factory.mktemp("other-ca"), name="other")


@pytest.fixture()
def served(demo_assets: Path, tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(demo_assets / "demo-cnn.onnx", root / "demo-cnn.onnx")
    shutil.copy(demo_assets / "labels.txt", root / "labels.txt")
    return root


@pytest.fixture()
def server(served: Path, ca: Dict[str, Path]) -> Iterator[FileServer]:
    with FileServer(served, tls=ca) as srv:
        yield srv


def remote(server: FileServer, served: Path, name: str, store: Path, **overrides: Any) -> RemoteFile:
    values: Dict[str, Any] = dict(
        field="path",
        url=server.url(name),
        sha256=sha256(served / name),
        size=(served / name).stat().st_size,
        archive=False,
        store=str(store),
    )
    values.update(overrides)
    return RemoteFile(**values)
