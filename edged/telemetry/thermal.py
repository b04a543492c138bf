"""Thermal zones: stable names across L4T releases, and power-gated zones read as offline.

Zone types change across releases for the same sensor: ``GPU-therm`` (L4T R35) became
``gpu-thermal`` (R36, R38); ``Tboard_tegra`` / ``tboard-thermal``; Thor (R38) adds
``soc012-thermal`` and ``soc345-thermal`` (NVIDIA's Jetson Linux Developer Guide, "BSP-specific
thermal zones", and tegrastats captures). Telemetry keys are the stable name: lower case,
without the ``-therm`` / ``-thermal`` / ``_tegra`` suffix ("gpu", "cpu", "cv0", "soc0", "tj",
"tboard").

BPMP-backed zones of power-gated domains (GPU, CV0-2 = DLA/PVA at idle) answer EAGAIN, and
tegrastats prints them as ``GPU@-256C`` (jetson_stats' tegrastats emulator, AGX Orin): both
mean "offline", never a temperature. A zone is kept from discovery on as long as its ``type``
reads, so a domain gated at start-up is reported once it powers up.
"""

from __future__ import annotations

import glob
import os
import re
from typing import List, NamedTuple, Optional

from edged.sysfs import read_text

__all__ = ["Zone", "discover_zones", "read_zone", "stable_name", "OFFLINE_MILLIDEGREES"]

OFFLINE_MILLIDEGREES = -256000
_SUFFIX = re.compile(r"[-_](therm|thermal|tegra)$", re.IGNORECASE)
# Zones that estimate rather than measure (the fan governor's input), not sensors.
_SKIP = ("thermal-fan-est",)


class Zone(NamedTuple):
    name: str  # stable telemetry key
    kind: str  # the zone's own type
    temp_path: str


def stable_name(kind: str) -> str:
    return _SUFFIX.sub("", kind.strip()).lower()


def discover_zones(root: str) -> List[Zone]:
    zones: List[Zone] = []
    taken = set()
    for zone in sorted(glob.glob(os.path.join(root, "sys/class/thermal/thermal_zone*")), key=_zone_number):
        kind = read_text(os.path.join(zone, "type"))
        if not kind or kind in _SKIP:
            continue
        name, n = stable_name(kind), 2
        while name in taken:  # two zones of one type keep both, numbered
            name, n = f"{stable_name(kind)}-{n}", n + 1
        taken.add(name)
        zones.append(Zone(name, kind, os.path.join(zone, "temp")))
    return zones


def _zone_number(path: str) -> int:
    digits = re.sub(r"\D", "", os.path.basename(path))
    return int(digits) if digits else 0


def read_zone(zone: Zone) -> Optional[float]:
    """°C, or None when the zone is offline (EAGAIN or any read error, or -256 °C)."""
    raw = read_text(zone.temp_path)
    if raw is None or not raw.lstrip("-").isdigit():
        return None
    value = int(raw)
    return None if value <= OFFLINE_MILLIDEGREES else value / 1000.0
