"""Device health as pure functions of a root path: temperatures, GPU load, CPU use, DLA state.

Discover once, read often, and rediscover what was missing: the nvgpu devfreq node can appear
late in boot (jetson_stats' GPU service keeps re-probing sysfs for the same reason), so a
service started early would otherwise report no GPU load all session. Whatever stays missing
is said, with what was looked for, in ``HealthSample.unavailable``.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from edged.platform.dla_nodes import DLA_PATTERNS, dla_nodes
from edged.platform.jetson import compatible
from edged.sysfs import read_text as _read
from edged.telemetry.nvml import NvmlGpu, NvmlSource
from edged.telemetry.thermal import Zone, discover_zones, read_zone

__all__ = ["HealthSpec", "HealthSample", "HealthReader", "discover_health", "REDISCOVER_S"]

log = logging.getLogger(__name__)

# devfreq names of Jetson GPUs with an nvgpu ``load`` node (tenths of a percent): ga10b and
# 17000000.gpu (Orin, L4T R35 / R36), gv11b (Xavier), gp10b (TX2). Thor's gpu-gpc-0 / gpu-nvd-0
# have none: its load comes from NVML.
_GPU_DEVFREQ = ("ga10b", "gv11b", "gp10b", "gpu")
REDISCOVER_S = 30.0


@dataclass(frozen=True)
class HealthSpec:
    root: str
    zones: Tuple[Zone, ...]
    gpu_load_path: Optional[str]
    dla_status_paths: Tuple[Tuple[str, str], ...]  # (dla0, runtime_status file)
    missing: Dict[str, str] = field(default_factory=dict)  # what -> where it was looked for
    nvml: Optional[NvmlSource] = field(default=None, compare=False)


@dataclass
class HealthSample:
    temps_c: Dict[str, float] = field(default_factory=dict)
    temps_offline: List[str] = field(default_factory=list)  # zones that exist but are power-gated
    gpu_util_pct: Optional[float] = None  # the "gpu" device
    gpu_util_by_device: Dict[str, float] = field(default_factory=dict)  # NVML on multi-GPU hosts
    cpu_util_pct: Optional[float] = None
    dla_active: Dict[str, bool] = field(default_factory=dict)
    unavailable: Dict[str, str] = field(default_factory=dict)


def _gpu_load(root: str) -> Optional[str]:
    for entry in sorted(glob.glob(os.path.join(root, "sys/class/devfreq/*"))):
        if any(tag in os.path.basename(entry) for tag in _GPU_DEVFREQ):
            candidate = os.path.join(entry, "device", "load")
            if _read(candidate) is not None:
                return candidate
    return None


def _has_dla_soc(root: str) -> bool:
    """Xavier and Orin SoCs carry DLAs (Orin Nano's are fused off: said as missing, harmlessly)."""
    return bool({"nvidia,tegra194", "nvidia,tegra234"} & set(compatible(root)))


def discover_health(root: str = "/", nvml: Optional[NvmlSource] = None) -> HealthSpec:
    """What can be read under ``root``; ``nvml`` (an open NVML) gives GPU load where no nvgpu
    ``load`` node exists (Thor, dGPU hosts)."""
    zones = tuple(discover_zones(root))
    gpu_load = _gpu_load(root)
    dlas = tuple(
        (name, os.path.join(node, "power", "runtime_status"))
        for name, node in dla_nodes(root)
        if _read(os.path.join(node, "power", "runtime_status")) is not None
    )
    missing: Dict[str, str] = {}
    if not zones:
        missing["temps_c"] = "no readable sys/class/thermal/thermal_zone*/type"
    if gpu_load is None and nvml is None:
        missing["gpu_util"] = (
            f"no GPU devfreq node ({', '.join(_GPU_DEVFREQ)}) with device/load under sys/class/devfreq, "
            "and no NVML (nvidia-ml-py)"
        )
    if not dlas and _has_dla_soc(root):
        missing["dla"] = "no DLA node (a host1x child *.nvdlaN with power/runtime_status) at " + " or ".join(
            DLA_PATTERNS
        )
    return HealthSpec(root, zones, gpu_load, dlas, missing, nvml)


class HealthReader:
    def __init__(
        self,
        spec: HealthSpec,
        rediscover_s: float = REDISCOVER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self._rediscover_s = rediscover_s
        self._clock = clock
        self._discovered_at = clock()
        self._last_cpu: Optional[Tuple[int, int]] = None
        for what, looked in spec.missing.items():
            log.info("health: %s unavailable: %s; looking again every %.0f s", what, looked, rediscover_s)

    def _rediscover(self) -> None:
        now = self._clock()
        if not self.spec.missing or now - self._discovered_at < self._rediscover_s:
            return
        self._discovered_at = now
        fresh = discover_health(self.spec.root, self.spec.nvml)
        for what in set(self.spec.missing) - set(fresh.missing):
            log.info("health: %s found on a later look", what)
        self.spec = fresh

    def read(self) -> HealthSample:
        self._rediscover()
        sample = HealthSample()
        for zone in self.spec.zones:
            value = read_zone(zone)
            if value is None:
                sample.temps_offline.append(zone.name)
            else:
                sample.temps_c[zone.name] = value
        if self.spec.gpu_load_path:
            raw = _read(self.spec.gpu_load_path)
            if raw and raw.isdigit():
                sample.gpu_util_pct = int(raw) / 10.0  # devfreq load is in tenths of a percent
        elif self.spec.nvml is not None:
            self._nvml_util(self.spec.nvml, sample)
        for name, path in self.spec.dla_status_paths:
            sample.dla_active[name] = _read(path) == "active"
        sample.cpu_util_pct = self._cpu_util()
        sample.unavailable = {**self.spec.missing, **sample.unavailable}
        return sample

    @staticmethod
    def _nvml_util(nvml: NvmlSource, sample: HealthSample) -> None:
        unsupported: List[NvmlGpu] = []
        for gpu in nvml.gpus:
            value = nvml.util_pct(gpu)
            if value is not None:
                sample.gpu_util_by_device[gpu.device] = value
            elif "nvmlDeviceGetUtilizationRates" in gpu.unsupported:
                unsupported.append(gpu)
        sample.gpu_util_pct = sample.gpu_util_by_device.get("gpu")
        if unsupported:
            why = unsupported[0].unsupported["nvmlDeviceGetUtilizationRates"]
            sample.unavailable["gpu_util"] = f"NVML utilisation not supported on {unsupported[0].name}: {why}"

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
