"""Power rails, as pure functions of a root path: discover once, read often.

Sources, in order of preference (DESIGN.md §8):
- INA3221 hwmon (JetPack 5+): ``sys/bus/i2c/devices/*/name`` is ``ina3221``; its
  ``hwmon/hwmon*/in{N}_label``, ``in{N}_input`` (mV) and ``curr{N}_input`` (mA). Channel 7 is
  the driver's "sum of shunt voltages" (µV, Linux Documentation/hwmon/ina3221.rst), not a rail.
- INA238 hwmon (Jetson AGX Thor's carrier): the board input "VIN", whose ``power1_input`` is
  in µW (Linux Documentation/hwmon/ina238.rst); its name is the hwmon device's ``label``
  (the device-tree label). Thor's INA3221 carries module rails only (VDD_GPU,
  VDD_CPU_SOC_MSS, VIN_SYS_5V0), so VIN is the total (jetson_stats pull request 900).
- ina3221x IIO (JetPack 4): ``iio:device*/rail_name_{N}`` and ``in_power{N}_input`` (mW).
- NVML (dGPU hosts, edged/telemetry/nvml.py): each GPU's board power and energy counter.
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
from edged.telemetry.nvml import NvmlGpu, NvmlSource

__all__ = ["Rail", "PowerSpec", "PowerSample", "discover_power", "read_power", "TOTAL_RAILS"]

# Rails that already measure the whole input; where present they are the total (Thor: the
# carrier's VIN; Orin NX/Nano, Xavier NX: VDD_IN; Nano: POM_5V_IN). AGX Orin and AGX Xavier
# have none: their rails are summed.
TOTAL_RAILS = ("VIN", "VDD_IN", "POM_5V_IN")
_SUM_CHANNEL = "sum of shunt voltages"


@dataclass(frozen=True)
class Rail:
    label: str
    kind: str  # "hwmon" | "hwmon-power" | "iio" | "rapl" | "nvml"
    power_path: str = ""  # iio: mW file; hwmon-power: µW file
    volt_path: str = ""  # hwmon: mV file
    curr_path: str = ""  # hwmon: mA file
    energy_path: str = ""  # rapl: µJ counter
    wrap_uj: int = 0
    gpu: Optional[NvmlGpu] = field(default=None, compare=False)  # nvml: the GPU


@dataclass(frozen=True)
class PowerSpec:
    rails: Tuple[Rail, ...]
    source: str  # "ina3221", "ina3221+ina238", "ina3221x", "nvml", "rapl", "nvml+rapl" or "" when none
    reason: str = ""  # why nothing is readable, stated once in the status message
    total_rail: Optional[str] = None  # the rail that is the total; None: the sum of the rails
    nvml: Optional[NvmlSource] = field(default=None, compare=False)


@dataclass
class PowerSample:
    ts: float
    rails_mw: Dict[str, float] = field(default_factory=dict)
    total_mw: Optional[float] = None
    energy_mj: Dict[str, float] = field(default_factory=dict)  # device ("gpu", "gpu0") -> NVML counter


def _hwmon_rails(root: str) -> List[Rail]:
    rails = []
    for device in sorted(glob.glob(os.path.join(root, "sys/bus/i2c/devices/*"))):
        chip = _read(os.path.join(device, "name"))
        for hwmon in sorted(glob.glob(os.path.join(device, "hwmon/hwmon*"))):
            if chip == "ina3221":
                rails += _ina3221_channels(hwmon)
            elif chip == "ina238":
                power = os.path.join(hwmon, "power1_input")
                label = _read(os.path.join(hwmon, "label")) or f"ina238 {os.path.basename(device)}"
                if os.path.exists(power):
                    rails.append(Rail(label, "hwmon-power", power_path=power))
    return rails


def _ina3221_channels(hwmon: str) -> List[Rail]:
    rails = []
    for label_path in sorted(glob.glob(os.path.join(hwmon, "in*_label"))):
        channel = os.path.basename(label_path)[2:-6]
        label = _read(label_path) or ""
        if not label or "NC" in label.split() or label == _SUM_CHANNEL:
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


def _nvml_rails(nvml: Optional[NvmlSource]) -> List[Rail]:
    if nvml is None:
        return []
    return [Rail(gpu.device, "nvml", gpu=gpu) for gpu in nvml.gpus if nvml.power_mw(gpu) is not None]


def _total_rail(rails: List[Rail]) -> Optional[str]:
    labels = {rail.label for rail in rails}
    return next((name for name in TOTAL_RAILS if name in labels), None)


def discover_power(root: str = "/", nvml: Optional[NvmlSource] = None) -> PowerSpec:
    """The rails under ``root``; ``nvml`` (an open NVML) adds a dGPU host's GPUs."""
    rails = _hwmon_rails(root)
    if rails:
        kinds = ["ina3221"] if any(r.kind == "hwmon" for r in rails) else []
        kinds += ["ina238"] if any(r.kind == "hwmon-power" for r in rails) else []
        return PowerSpec(tuple(rails), "+".join(kinds), total_rail=_total_rail(rails))
    rails = _iio_rails(root)
    if rails:
        return PowerSpec(tuple(rails), "ina3221x", total_rail=_total_rail(rails))
    gpus, rapl = _nvml_rails(nvml), _rapl_rails(root)
    if gpus or rapl:
        source = "+".join(name for name, found in (("nvml", gpus), ("rapl", rapl)) if found)
        return PowerSpec(tuple(gpus + rapl), source, nvml=nvml)
    rapl_present = glob.glob(os.path.join(root, "sys/class/powercap/intel-rapl:*"))
    reason = (
        "RAPL counters exist but are not readable by this user (root-only since Linux 5.10)"
        if rapl_present
        else "no INA3221/INA238 monitor, NVML GPU power or RAPL counters found"
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
            if rail.gpu is not None and self.spec.nvml is not None:
                energy = self.spec.nvml.energy_mj(rail.gpu)
                if energy is not None:
                    sample.energy_mj[rail.label] = energy
        if sample.rails_mw:
            total = self.spec.total_rail
            sample.total_mw = sample.rails_mw.get(total) if total else sum(sample.rails_mw.values())
        return sample

    def _rail_mw(self, rail: Rail, now: float) -> Optional[float]:
        if rail.kind == "hwmon":
            volt, curr = _read(rail.volt_path), _read(rail.curr_path)
            return float(volt) * float(curr) / 1000.0 if volt and curr else None
        if rail.kind in ("iio", "hwmon-power"):
            power = _read(rail.power_path)
            scale = 1000.0 if rail.kind == "hwmon-power" else 1.0  # µW vs mW
            return float(power) / scale if power else None
        if rail.kind == "nvml":
            assert rail.gpu is not None and self.spec.nvml is not None
            return self.spec.nvml.power_mw(rail.gpu)
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
