"""Power rails, as pure functions of a root path: discover once, read often.

Sources, in order of preference (DESIGN.md §8):
- INA3221 hwmon (JetPack 5+): ``sys/bus/i2c/devices/*/name`` is ``ina3221``; its
  ``hwmon/hwmon*/in{N}_label``, ``in{N}_input`` (mV) and ``curr{N}_input`` (mA).
- ina3221x IIO (JetPack 4): ``iio:device*/rail_name_{N}`` and ``in_power{N}_input`` (mW).
- RAPL powercap on x86: ``sys/class/powercap/intel-rapl:*/energy_uj`` (µJ counters that
  wrap at ``max_energy_range_uj``; root-only since Linux 5.10).
A rail labelled with ``NC`` is an unconnected channel and is skipped.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from edged.sysfs import read_text as _read

__all__ = ["Rail", "PowerSpec", "PowerSample", "discover_power", "read_power", "TOTAL_RAILS"]

# Rails that already measure the whole module's input; where present they are the total
# (Orin NX/Nano, Xavier NX: VDD_IN; Nano: POM_5V_IN). AGX Orin has none: its rails are summed.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")


@dataclass(frozen=True)
class Rail:
    label: str
    kind: str  # "hwmon" | "iio" | "rapl"
    power_path: str = ""  # iio: mW file
    volt_path: str = ""  # hwmon: mV file
    curr_path: str = ""  # hwmon: mA file
    energy_path: str = ""  # rapl: µJ counter
    wrap_uj: int = 0


@dataclass(frozen=True)
class PowerSpec:
    rails: Tuple[Rail, ...]
    source: str  # "ina3221", "ina3221x", "rapl" or "" when none
    reason: str = ""  # why nothing is readable, stated once in the status message


@dataclass
class PowerSample:
    ts: float
    rails_mw: Dict[str, float] = field(default_factory=dict)
    total_mw: Optional[float] = None


def _hwmon_rails(root: str) -> List[Rail]:
    rails = []
    for device in sorted(glob.glob(os.path.join(root, "sys/bus/i2c/devices/*"))):
        if _read(os.path.join(device, "name")) != "ina3221":
            continue
        for hwmon in sorted(glob.glob(os.path.join(device, "hwmon/hwmon*"))):
            for label_path in sorted(glob.glob(os.path.join(hwmon, "in*_label"))):
                channel = os.path.basename(label_path)[2:-6]
                label = _read(label_path) or ""
                if not label or "NC" in label.split():
                    continue
                volt = os.path.join(hwmon, f"in{channel}_input")
                curr = os.path.join(hwmon, f"curr{channel}_input")
                if os.path.exists(volt) and os.path.exists(curr):
                    rails.append(Rail(label, "hwmon", volt_path=volt, curr_path=curr))
    return rails


def _iio_rails(root: str) -> List[Rail]:
    rails = []
    pattern = os.path.join(root, "sys/bus/i2c/devices/*/iio:device*/rail_name_*")
    for name_path in sorted(glob.glob(pattern)):
        channel = name_path.rsplit("_", 1)[1]
        label = _read(name_path) or ""
        power = os.path.join(os.path.dirname(name_path), f"in_power{channel}_input")
        if label and "NC" not in label.split() and os.path.exists(power):
            rails.append(Rail(label, "iio", power_path=power))
    return rails


def _rapl_rails(root: str) -> List[Rail]:
    rails = []
    for zone in sorted(glob.glob(os.path.join(root, "sys/class/powercap/intel-rapl:*"))):
        if os.path.basename(zone).count(":") != 1:
            continue  # sub-zones (core, uncore) are already inside their package
        energy = os.path.join(zone, "energy_uj")
        if _read(energy) is None:
            continue
        name = _read(os.path.join(zone, "name")) or os.path.basename(zone)
        wrap = int(_read(os.path.join(zone, "max_energy_range_uj")) or 0)
        rails.append(Rail(name, "rapl", energy_path=energy, wrap_uj=wrap))
    return rails


def discover_power(root: str = "/") -> PowerSpec:
    for source, finder in (("ina3221", _hwmon_rails), ("ina3221x", _iio_rails), ("rapl", _rapl_rails)):
        rails = finder(root)
        if rails:
            return PowerSpec(tuple(rails), source)
    rapl_present = glob.glob(os.path.join(root, "sys/class/powercap/intel-rapl:*"))
    reason = (
        "RAPL counters exist but are not readable by this user (root-only since Linux 5.10)"
        if rapl_present
        else "no INA3221 monitor or RAPL counters found; NVML energy needs nvidia-ml-py on a dGPU"
    )
    return PowerSpec((), "", reason)


class PowerReader:
    """Samples a PowerSpec; RAPL rails turn counter deltas into power between calls."""

    def __init__(self, spec: PowerSpec) -> None:
        self.spec = spec
        self._last_energy: Dict[str, Tuple[float, int]] = {}

    def read(self, now: Optional[float] = None) -> PowerSample:
        now = time.monotonic() if now is None else now
        sample = PowerSample(now)
        for rail in self.spec.rails:
            value = self._rail_mw(rail, now)
            if value is not None:
                sample.rails_mw[rail.label] = value
        if sample.rails_mw:
            totals = [sample.rails_mw[r] for r in TOTAL_RAILS if r in sample.rails_mw]
            sample.total_mw = totals[0] if totals else sum(sample.rails_mw.values())
        return sample

    def _rail_mw(self, rail: Rail, now: float) -> Optional[float]:
        if rail.kind == "hwmon":
            volt, curr = _read(rail.volt_path), _read(rail.curr_path)
            return float(volt) * float(curr) / 1000.0 if volt and curr else None
        if rail.kind == "iio":
            power = _read(rail.power_path)
            return float(power) if power else None
        raw = _read(rail.energy_path)
        if raw is None:
            return None
        energy = int(raw)
        last = self._last_energy.get(rail.label)
        self._last_energy[rail.label] = (now, energy)
        if last is None or now <= last[0]:
            return None
        delta = energy - last[1]
        if delta < 0:  # the counter wrapped
            delta += rail.wrap_uj
        return delta / (now - last[0]) / 1000.0


def read_power(spec: PowerSpec) -> PowerSample:
    """One sample of instantaneous rails (RAPL needs a PowerReader for deltas)."""
    return PowerReader(spec).read()
