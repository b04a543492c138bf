"""Jetson identification from the device tree, L4T release and soc0 (DESIGN.md §7)."""

from __future__ import annotations

import os
import re
from typing import Dict, List, NamedTuple, Optional

__all__ = ["Module", "MODULES", "SOC_GPU", "compatible", "module_for", "l4t_release"]


class Module(NamedTuple):
    name: str
    soc: str
    dla_cores: int


# Module part numbers (the "p3701-0005" in device-tree compatible) and their DLA counts,
# from NVIDIA's module data sheets; used when TensorRT is not importable to ask.
MODULES: Dict[str, Module] = {
    "p2888-0001": Module("Jetson AGX Xavier 16GB", "tegra194", 2),
    "p2888-0004": Module("Jetson AGX Xavier 32GB", "tegra194", 2),
    "p2888-0005": Module("Jetson AGX Xavier 64GB", "tegra194", 2),
    "p2888-0008": Module("Jetson AGX Xavier Industrial", "tegra194", 2),
    "p3668-0000": Module("Jetson Xavier NX (developer kit)", "tegra194", 2),
    "p3668-0001": Module("Jetson Xavier NX", "tegra194", 2),
    "p3668-0003": Module("Jetson Xavier NX 16GB", "tegra194", 2),
    "p3701-0000": Module("Jetson AGX Orin (developer kit)", "tegra234", 2),
    "p3701-0004": Module("Jetson AGX Orin 32GB", "tegra234", 2),
    "p3701-0005": Module("Jetson AGX Orin 64GB", "tegra234", 2),
    "p3701-0008": Module("Jetson AGX Orin Industrial", "tegra234", 2),
    "p3767-0000": Module("Jetson Orin NX 16GB", "tegra234", 2),
    "p3767-0001": Module("Jetson Orin NX 8GB", "tegra234", 1),
    "p3767-0003": Module("Jetson Orin Nano 8GB", "tegra234", 0),
    "p3767-0004": Module("Jetson Orin Nano 4GB", "tegra234", 0),
    "p3767-0005": Module("Jetson Orin Nano 8GB (developer kit)", "tegra234", 0),
}

# Integrated GPU of each SoC: name and compute capability.
SOC_GPU: Dict[str, tuple] = {  # type: ignore[type-arg]
    "tegra194": ("Volta (Xavier iGPU)", "7.2"),
    "tegra234": ("Ampere (Orin iGPU)", "8.7"),
    "tegra264": ("Blackwell (Thor iGPU)", "11.0"),
}


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def compatible(root: str) -> List[str]:
    """Device-tree compatible strings, most specific first (NUL-separated in the file)."""
    raw = _read(os.path.join(root, "proc/device-tree/compatible")) or ""
    return [part for part in raw.split("\0") if part]


def module_for(entries: List[str]) -> Optional[str]:
    """The module part number: a compatible entry "nvidia,pNNNN-NNNN" naming a known module.

    Carrier boards come first ("p3768-0000+p3767-0005"), so every part of every entry is tried.
    """
    for entry in entries:
        for part in re.findall(r"p\d{4}-\d{4}", entry):
            if part in MODULES:
                return str(part)
    return None


def l4t_release(root: str) -> Optional[str]:
    """``# R36 (release), REVISION: 4.3, ...`` in /etc/nv_tegra_release -> "36.4.3"."""
    text = _read(os.path.join(root, "etc/nv_tegra_release")) or ""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None
