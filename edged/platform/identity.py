"""A device id that is unique without hand-editing, read under a root path.

The MQTT client id is ``edged-<device id>``; two devices with one id take each other's
session over (edged/mqtt/takeover.py). A fleet installed from one package and one disk
image therefore needs an id the device already owns:

- ``serial``: the module's serial number, ``/proc/device-tree/serial-number`` (the root
  node's standard property, Devicetree Specification v0.4 §3.2; Jetson's boot firmware
  fills it from the module EEPROM). Unique per module, survives reflashing, and printed
  on the module's label, so an operator can find the device. Absent on x86.
- ``machine-id``: ``/etc/machine-id``, written at first boot. machine-id(5) asks that it
  never be exposed; like sd_id128_get_machine_app_specific(3) it is hashed with a key of
  this application (HMAC-SHA256), 64 bits of which name the device. A disk image cloned
  after its first boot shares it: the takeover check reports that.
- ``hostname``: ``/etc/hostname``, only when chosen: factory images often share one.

``auto`` (the default) takes the serial, else the machine id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from edged.errors import ConfigError

__all__ = ["Identity", "ID_SOURCES", "derive_device_id"]

ID_SOURCES = ("auto", "serial", "machine-id", "hostname")
# Fixed for this application, as sd_id128_get_machine_app_specific wants: changing it
# renames every device that derives its id from the machine id.
_APP_KEY = bytes.fromhex("5b0e2c7d9a4f41c38e16d2a07f3b6c95")
_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Identity:
    id: str
    source: str  # serial | machine-id | hostname | config


def _read(path: Path) -> Optional[str]:
    try:
        text = path.read_bytes().decode("ascii", "replace")
    except OSError:
        return None
    text = text.replace("\x00", "").strip()
    return text or None


def _clean(text: str) -> Optional[str]:
    """``text`` as an id matching the schema's ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$``."""
    cleaned = _INVALID.sub("-", text).strip("-_.")
    return cleaned[:64] or None


def _serial(root: Path) -> Optional[str]:
    serial = _read(root / "proc/device-tree/serial-number")
    cleaned = _clean(serial) if serial else None
    return f"edge-{cleaned}"[:64] if cleaned else None


def _machine_id(root: Path) -> Optional[str]:
    machine = _read(root / "etc/machine-id")
    # machine-id(5): 32 lower-case hexadecimal characters; "uninitialized" during first boot.
    if machine is None or not re.fullmatch(r"[0-9a-fA-F]{32}", machine):
        return None
    digest = hmac.new(_APP_KEY, bytes.fromhex(machine), hashlib.sha256).hexdigest()
    return f"edge-{digest[:16]}"


def _hostname(root: Path) -> Optional[str]:
    name = _read(root / "etc/hostname")
    return _clean(name.splitlines()[0]) if name else None


_READERS: Dict[str, Callable[[Path], Optional[str]]] = {
    "serial": _serial,
    "machine-id": _machine_id,
    "hostname": _hostname,
}
_FILES = {"serial": "proc/device-tree/serial-number", "machine-id": "etc/machine-id", "hostname": "etc/hostname"}


def derive_device_id(root: str, source: str = "auto") -> Identity:
    """The id from ``source`` under ``root``; a ConfigError naming what was looked for
    when there is none."""
    order: Tuple[str, ...] = ("serial", "machine-id") if source == "auto" else (source,)
    for name in order:
        found = _READERS[name](Path(root))
        if found:
            return Identity(found, name)
    looked = ", ".join(str(Path(root) / _FILES[name]) for name in order)
    raise ConfigError(f"device.id: not set, and no usable id_from {source!r} ({looked}); set device.id")
