"""The power and health readers of a root path, with NVML opened once for both where it answers."""

from __future__ import annotations

import logging
from typing import Optional, Tuple

from edged.telemetry.health import HealthReader, discover_health
from edged.telemetry.nvml import NvmlSource, open_nvml
from edged.telemetry.power import PowerReader, PowerSpec, discover_power

__all__ = ["open_readers", "power_spec"]

log = logging.getLogger(__name__)


def _nvml() -> Optional[NvmlSource]:
    source, reason = open_nvml()
    if source is None:
        log.info("NVML unavailable: %s", reason)
    return source


def power_spec(root: str, nvml: bool) -> PowerSpec:
    """The rails ``edged info`` lists; NVML is asked only for this host (``nvml``)."""
    return discover_power(root, _nvml() if nvml else None)


def open_readers(root: str) -> Tuple[PowerReader, HealthReader]:
    """NVML is asked only for this host's own root: a fixture tree has no GPUs of its own."""
    nvml = _nvml() if root == "/" else None
    return PowerReader(discover_power(root, nvml)), HealthReader(discover_health(root, nvml))
