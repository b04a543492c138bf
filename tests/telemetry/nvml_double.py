"""A test double of ``pynvml`` (nvidia-ml-py): NVML's hardware cannot run here.

Only the calls edged makes, behaving as NVIDIA's ``nvml.h`` and nvidia-ml-py's ``pynvml.py``
document them:
- every call before ``nvmlInit`` raises ``NVMLError(NVML_ERROR_UNINITIALIZED)`` (1);
- ``nvmlDeviceGetHandleByIndex`` past the count raises ``NVML_ERROR_INVALID_ARGUMENT`` (2);
- ``nvmlDeviceGetName`` returns ``str`` (nvidia-ml-py 11.515 and later);
- ``nvmlDeviceGetPowerUsage``: mW; ``nvmlDeviceGetTotalEnergyConsumption``: mJ since the driver
  loaded, Volta and newer only; ``nvmlDeviceGetUtilizationRates``: a struct with ``gpu`` and
  ``memory`` in percent;
- a query the GPU does not support raises ``NVMLError(NVML_ERROR_NOT_SUPPORTED)`` (3), whose
  ``str`` is NVML's "Not Supported".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Dict, List, Set

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
_WORDS = {1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported"}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _WORDS.get(self.value, f"Unknown Error {self.value}")


@dataclass
class GpuDouble:
    name: str
    power_mw: int = 0
    energy_mj: int = 0
    util_pct: int = 0
    unsupported: Set[str] = field(default_factory=set)  # pynvml function names


class NvmlDouble:
    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED

    def __init__(self, gpus: List[GpuDouble]) -> None:
        self.gpus = gpus
        self.initialised = False
        self.calls: Dict[str, int] = {}

    def _check(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if not self.initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def nvmlInit(self) -> None:
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> GpuDouble:
        self._check("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def _query(self, name: str, handle: GpuDouble) -> None:
        self._check(name)
        if name in handle.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetName(self, handle: GpuDouble) -> str:
        self._query("nvmlDeviceGetName", handle)
        return handle.name

    def nvmlDeviceGetPowerUsage(self, handle: GpuDouble) -> int:
        self._query("nvmlDeviceGetPowerUsage", handle)
        return handle.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: GpuDouble) -> int:
        self._query("nvmlDeviceGetTotalEnergyConsumption", handle)
        return handle.energy_mj

    def nvmlDeviceGetUtilizationRates(self, handle: GpuDouble) -> Any:
        self._query("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=handle.util_pct, memory=0)
