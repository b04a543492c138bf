"""Jetson identification from the module EEPROM, device tree, L4T release and soc0 (DESIGN.md §7)."""

from __future__ import annotations

import os
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

__all__ = [
    "Module",
    "MODULES",
    "SOC_GPU",
    "SOC_DLA_DEFAULT",
    "compatible",
    "module_for",
    "module_identity",
    "eeprom_part",
    "l4t_release",
    "arm_cpu_name",
]


class Module(NamedTuple):
    name: str
    soc: str
    dla_cores: int
    gpu_sms: Optional[int]  # streaming multiprocessors of the iGPU: tells modules of one SoC apart


# Module part numbers (the "p3701-0005" of the device tree and of the EEPROM's 699-level number)
# with their DLA cores and GPU SMs (CUDA cores / 64 on Volta and Ampere, / 128 on Blackwell),
# from NVIDIA's module data sheets; used when TensorRT is not importable to ask.
MODULES: Dict[str, Module] = {
    "p2888-0001": Module("Jetson AGX Xavier 16GB", "tegra194", 2, 8),
    "p2888-0003": Module("Jetson AGX Xavier 32GB", "tegra194", 2, 8),
    "p2888-0004": Module("Jetson AGX Xavier 32GB", "tegra194", 2, 8),
    "p2888-0005": Module("Jetson AGX Xavier 64GB", "tegra194", 2, 8),
    "p2888-0006": Module("Jetson AGX Xavier 8GB", "tegra194", 2, 8),
    "p2888-0008": Module("Jetson AGX Xavier Industrial", "tegra194", 2, 8),
    "p3668-0000": Module("Jetson Xavier NX (developer kit)", "tegra194", 2, 6),
    "p3668-0001": Module("Jetson Xavier NX", "tegra194", 2, 6),
    "p3668-0003": Module("Jetson Xavier NX 16GB", "tegra194", 2, 6),
    "p3701-0000": Module("Jetson AGX Orin (developer kit)", "tegra234", 2, 16),
    "p3701-0001": Module("Jetson AGX Orin", "tegra234", 2, None),
    "p3701-0002": Module("Jetson IGX Orin (developer kit)", "tegra234", 2, 16),
    "p3701-0004": Module("Jetson AGX Orin 32GB", "tegra234", 2, 14),
    "p3701-0005": Module("Jetson AGX Orin 64GB", "tegra234", 2, 16),
    "p3701-0008": Module("Jetson AGX Orin Industrial", "tegra234", 2, 16),
    "p3767-0000": Module("Jetson Orin NX 16GB", "tegra234", 2, 8),
    "p3767-0001": Module("Jetson Orin NX 8GB", "tegra234", 1, 8),
    "p3767-0003": Module("Jetson Orin Nano 8GB", "tegra234", 0, 8),
    "p3767-0004": Module("Jetson Orin Nano 4GB", "tegra234", 0, 4),
    "p3767-0005": Module("Jetson Orin Nano 8GB (developer kit)", "tegra234", 0, 8),
    # AGX Thor developer kit module (T5000: 2560 Blackwell cores), as its EEPROM and device tree
    # name it on L4T 38.2 (jetson_stats issue 711, raw output of an AGX Thor developer kit).
    "p3834-0008": Module("Jetson AGX Thor (developer kit, T5000)", "tegra264", 0, 20),
}

# Integrated GPU of each SoC: name and compute capability.
SOC_GPU: Dict[str, Tuple[str, str]] = {
    "tegra194": ("Volta (Xavier iGPU)", "7.2"),
    "tegra234": ("Ampere (Orin iGPU)", "8.7"),
    "tegra264": ("Blackwell (Thor iGPU)", "11.0"),
}

# DLA cores of a SoC's largest module, for a module edged does not know and whose DLA device
# nodes are not visible: Orin modules range from 0 to 2, so this is an upper bound, said so.
SOC_DLA_DEFAULT: Dict[str, int] = {"tegra194": 2, "tegra234": 2, "tegra264": 0}

# Arm MIDR implementer/part numbers of the Jetson CPUs (Arm's Cortex-A78AE and Neoverse V3AE
# technical reference manuals, MIDR_EL1; NVIDIA Carmel is implementer 0x4e part 0x004).
_ARM_CPUS: Dict[Tuple[str, str], str] = {
    ("0x4e", "0x004"): "NVIDIA Carmel",
    ("0x41", "0xd42"): "Cortex-A78AE",
    ("0x41", "0xd83"): "Neoverse V3AE",
}

# NVIDIA's Jetson module EEPROM layout: bytes 20..49 hold the 699-level part number,
# "699-13834-0008-400 G.5" for p3834-0008 (Jetson Linux Developer Guide, "Jetson Module EEPROM
# Layout"). The at24 driver exposes the EEPROM as ``eeprom`` (root-only); the module's EEPROM
# answers at address 0x50 on bus 0 (Xavier, Orin) or 1 (Thor, jetson_stats issue 711).
_EEPROM_PART = slice(20, 50)
_EEPROM_BUSES = ("0", "1", "2", "7")


def _read_bytes(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def compatible(root: str) -> List[str]:
    """Device-tree compatible strings, most specific first (NUL-separated in the file)."""
    raw = (_read_bytes(os.path.join(root, "proc/device-tree/compatible")) or b"").decode("utf-8", "replace")
    return [part for part in raw.split("\0") if part]


def eeprom_part(root: str) -> Optional[str]:
    """The module's 699-level part number from its EEPROM, when readable ("699-13834-0008-400 G.5")."""
    for bus in _EEPROM_BUSES:
        raw = _read_bytes(os.path.join(root, f"sys/bus/i2c/devices/{bus}-0050/eeprom"))
        if raw is None or len(raw) < _EEPROM_PART.stop:
            continue
        text = raw[_EEPROM_PART].split(b"\0", 1)[0].decode("ascii", "replace").strip()
        if re.match(r"699-\d{5}-\d{4}", text):
            return text
    return None


def module_for(entries: List[str]) -> Optional[str]:
    """The module part number named by the device tree: a known "pNNNN-NNNN" in any entry (carrier
    boards come first: "p3768-0000+p3767-0005"), else the part after "+" in a carrier+module entry."""
    for entry in entries:
        for part in re.findall(r"p\d{4}-\d{4}", entry):
            if part in MODULES:
                return str(part)
    for entry in entries:
        match = re.search(r"\+(p\d{4}-\d{4})", entry)
        if match:
            return match.group(1)
    return None


def module_identity(root: str) -> Tuple[Optional[str], str]:
    """(module part, where it was read). The EEPROM comes first: a device tree built for one SKU
    is flashed onto its siblings (the AGX Orin developer-kit tree names p3701-0000 on every AGX
    Orin), so only the EEPROM tells a p3701-0005 from a p3701-0000."""
    part = eeprom_part(root)
    if part:
        return f"p{part[5:9]}-{part[10:14]}", "module EEPROM"
    from_tree = module_for(compatible(root))
    return (from_tree, "device tree") if from_tree else (None, "")


def arm_cpu_name(implementer: str, part: str) -> Optional[str]:
    return _ARM_CPUS.get((implementer.lower(), part.lower()))


def l4t_release(root: str) -> Optional[str]:
    """``# R36 (release), REVISION: 4.3, ...`` in /etc/nv_tegra_release -> "36.4.3"."""
    text = (_read_bytes(os.path.join(root, "etc/nv_tegra_release")) or b"").decode("utf-8", "replace")
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None
