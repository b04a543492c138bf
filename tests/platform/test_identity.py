"""Device ids derived under a root path (edged/platform/identity.py), from fixture trees."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import yaml

from edged.config import parse_config
from edged.errors import ConfigError
from edged.platform.identity import derive_device_id

REPO = Path(__file__).resolve().parents[2]


def _tree(root: Path, files: Dict[str, bytes]) -> str:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return str(root)


def test_serial_wins_then_machine_id_then_a_clear_error(tmp_path: Path) -> None:
    jetson = _tree(
        tmp_path / "jetson",
        {
            "proc/device-tree/serial-number": b"1421021059876\x00",
            "etc/machine-id": b"0123456789abcdef0123456789abcdef\n",
        },
    )
    assert derive_device_id(jetson).id == "edge-1421021059876"
    assert derive_device_id(jetson).source == "serial"
    assert derive_device_id(jetson, "machine-id").source == "machine-id"

    a = _tree(tmp_path / "a", {"etc/machine-id": b"0123456789abcdef0123456789abcdef\n"})
    b = _tree(tmp_path / "b", {"etc/machine-id": b"fedcba9876543210fedcba9876543210\n"})
    id_a, id_b = derive_device_id(a), derive_device_id(b)
    assert id_a.source == "machine-id" and id_a.id.startswith("edge-") and len(id_a.id) == 21
    assert id_a != id_b and derive_device_id(a) == id_a  # distinct per machine, stable per machine
    assert "0123456789abcdef" not in id_a.id  # machine-id(5): the id itself is never exposed

    empty = _tree(tmp_path / "empty", {"etc/machine-id": b"uninitialized\n"})
    with pytest.raises(
        ConfigError, match=r"device.id: not set, and no usable id_from 'auto' .*serial-number.*machine-id"
    ):
        derive_device_id(empty)


def test_hostname_only_when_chosen_and_cleaned_to_the_id_pattern(tmp_path: Path) -> None:
    root = _tree(tmp_path / "h", {"etc/hostname": b"Cam Gate #3\n", "etc/machine-id": b"0" * 32 + b"\n"})
    assert derive_device_id(root).source == "machine-id"
    assert derive_device_id(root, "hostname").id == "Cam-Gate-3"


def test_the_packaged_config_names_each_device_differently(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "configs" / "edged.yaml").read_text())
    assert "id" not in doc["device"]  # never one name for a whole fleet
    ids = []
    for n, machine in enumerate((b"1" * 32, b"2" * 32)):
        doc["telemetry"]["root"] = _tree(tmp_path / f"dev{n}", {"etc/machine-id": machine + b"\n"})
        config = parse_config(doc)
        assert config.device.id_source == "machine-id"
        ids.append(config.device.id)
    assert ids[0] != ids[1]
    doc["device"]["id"] = "cam-gate-3"
    assert parse_config(doc).device.id == "cam-gate-3" and parse_config(doc).device.id_source == "config"
