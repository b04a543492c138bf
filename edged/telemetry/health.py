"""Device health as pure functions of a root path: temperatures, GPU load, CPU use, DLA state."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from edged.sysfs import read_text as _read

__all__ = ["HealthSpec", "HealthReader", "discover_health"]

# devfreq names of Jetson GPUs: ga10b (Orin), gv11b (Xavier), gp10b (TX2), gb10b (Thor).
_GPU_DEVFREQ = ("ga10b", "gv11b", "gp10b", "gb10b", "gpu")


@dataclass(frozen=True)
class HealthSpec:
    root: str
    thermal_zones: Tuple[Tuple[str, str], ...]  # (type, temp file)
    gpu_load_path: Optional[str]
    dla_status_paths: Tuple[Tuple[str, str], ...]  # (dla0, runtime_status file)


@dataclass
class HealthSample:
    temps_c: Dict[str, float] = field(default_factory=dict)
    gpu_util_pct: Optional[float] = None
    cpu_util_pct: Optional[float] = None
    dla_active: Dict[str, bool] = field(default_factory=dict)


def discover_health(root: str = "/") -> HealthSpec:
    zones: List[Tuple[str, str]] = []
    for zone in sorted(glob.glob(os.path.join(root, "sys/class/thermal/thermal_zone*"))):
        kind = _read(os.path.join(zone, "type"))
        temp = os.path.join(zone, "temp")
        if kind and _read(temp) is not None:
            zones.append((kind, temp))
    gpu_load = None
    for entry in sorted(glob.glob(os.path.join(root, "sys/class/devfreq/*"))):
        if any(tag in os.path.basename(entry) for tag in _GPU_DEVFREQ):
            candidate = os.path.join(entry, "device", "load")
            if _read(candidate) is not None:
                gpu_load = candidate
                break
    dlas = []
    for index, node in enumerate(sorted(glob.glob(os.path.join(root, "sys/devices/platform/*nvdla*")))):
        status = os.path.join(node, "power", "runtime_status")
        if _read(status) is not None:
            dlas.append((f"dla{index}", status))
    return HealthSpec(root, tuple(zones), gpu_load, tuple(dlas))


class HealthReader:
    def __init__(self, spec: HealthSpec) -> None:
        self.spec = spec
        self._last_cpu: Optional[Tuple[int, int]] = None

    def read(self) -> HealthSample:
        sample = HealthSample()
        for kind, path in self.spec.thermal_zones:
            raw = _read(path)
            if raw and raw.lstrip("-").isdigit():
                sample.temps_c[kind] = int(raw) / 1000.0  # millidegrees
        if self.spec.gpu_load_path:
            raw = _read(self.spec.gpu_load_path)
            if raw and raw.isdigit():
                sample.gpu_util_pct = int(raw) / 10.0  # devfreq load is in tenths of a percent
        for name, path in self.spec.dla_status_paths:
            sample.dla_active[name] = _read(path) == "active"
        sample.cpu_util_pct = self._cpu_util()
        return sample

    def _cpu_util(self) -> Optional[float]:
        line = (_read(os.path.join(self.spec.root, "proc/stat")) or "").split("\n", 1)[0]
        fields = line.split()
        if len(fields) < 5 or fields[0] != "cpu":
            return None
        values = [int(v) for v in fields[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values)
        last, self._last_cpu = self._last_cpu, (idle, total)
        if last is None or total <= last[1]:
            return None
        return 100.0 * (1.0 - (idle - last[0]) / (total - last[1]))
