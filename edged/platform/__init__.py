"""The machine edged runs on: Jetson module, dGPUs, CPU, library versions."""

from edged.platform.discover import discover
from edged.platform.model import GpuInfo, Platform

__all__ = ["GpuInfo", "Platform", "discover"]
