"""NVIDIA GPUs through NVML (``pynvml``, from the nvidia-ml-py package), imported lazily.

Used for dGPU hosts (board power, the energy counter, utilisation) and for Jetson Thor, whose
GPU has no nvgpu ``load`` node (its devfreq nodes are ``gpu-gpc-0`` / ``gpu-nvd-0``) and is
reported through NVML instead (jetson_stats issue 885, L4T 39.2). Facts from NVIDIA's
``nvml.h`` and nvidia-ml-py's ``pynvml.py``:
- ``nvmlDeviceGetPowerUsage``: board power in mW.
- ``nvmlDeviceGetTotalEnergyConsumption``: mJ since the driver was last loaded; Volta and newer.
- ``nvmlDeviceGetUtilizationRates(...).gpu``: percent of the last sample period a kernel ran.
- An unsupported query raises ``NVMLError`` whose ``value`` is ``NVML_ERROR_NOT_SUPPORTED`` (3):
  asked once, then not again. Other errors (a GPU fallen off the bus) skip one sample.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["NvmlGpu", "NvmlSource", "open_nvml", "device_name"]

log = logging.getLogger(__name__)

_NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED in nvml.h


def device_name(index: int, count: int) -> str:
    """The placement device a GPU is: "gpu" on a one-GPU host, "gpu0".. on several (target.py)."""
    return "gpu" if count == 1 else f"gpu{index}"


@dataclass
class NvmlGpu:
    index: int
    name: str
    device: str  # "gpu" | "gpu0" ...
    handle: Any
    unsupported: Dict[str, str] = field(default_factory=dict)  # query -> NVML's words


class NvmlSource:
    """Open NVML with its GPUs; each read returns None when NVML cannot answer it."""

    def __init__(self, lib: Any, gpus: List[NvmlGpu]) -> None:
        self.lib = lib
        self.gpus = gpus

    def _ask(self, gpu: NvmlGpu, query: str) -> Optional[Any]:
        if query in gpu.unsupported:
            return None
        try:
            return getattr(self.lib, query)(gpu.handle)
        except self.lib.NVMLError as exc:
            if getattr(exc, "value", None) == getattr(self.lib, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED):
                gpu.unsupported[query] = str(exc)
                log.info("NVML GPU %d (%s): %s is not supported: %s", gpu.index, gpu.name, query, exc)
            else:
                log.debug("NVML GPU %d: %s failed: %s", gpu.index, query, exc)
            return None

    def power_mw(self, gpu: NvmlGpu) -> Optional[float]:
        value = self._ask(gpu, "nvmlDeviceGetPowerUsage")
        return float(value) if value is not None else None

    def energy_mj(self, gpu: NvmlGpu) -> Optional[float]:
        value = self._ask(gpu, "nvmlDeviceGetTotalEnergyConsumption")
        return float(value) if value is not None else None

    def util_pct(self, gpu: NvmlGpu) -> Optional[float]:
        rates = self._ask(gpu, "nvmlDeviceGetUtilizationRates")
        return float(rates.gpu) if rates is not None else None


def open_nvml(lib: Optional[Any] = None) -> Tuple[Optional[NvmlSource], str]:
    """(NVML with its GPUs, "") or (None, why not). ``lib`` stands in for ``pynvml`` in tests."""
    if lib is None:
        try:
            lib = importlib.import_module("pynvml")
        except ImportError:
            return None, "NVML needs the nvidia-ml-py package (python module pynvml)"
    try:
        lib.nvmlInit()
        count = int(lib.nvmlDeviceGetCount())
        gpus = []
        for index in range(count):
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            name = lib.nvmlDeviceGetName(handle)
            name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            gpus.append(NvmlGpu(index, name, device_name(index, count), handle))
    except lib.NVMLError as exc:
        return None, f"NVML: {exc}"
    if not gpus:
        lib.nvmlShutdown()
        return None, "NVML found no GPU"
    return NvmlSource(lib, gpus), ""
