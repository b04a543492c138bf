"""Jetson Linux (L4T) release -> JetPack -> the TensorRT and CUDA that JetPack installs.

The one table edged consults when TensorRT itself cannot be asked: platform discovery on a
device whose Python lacks the bindings, ``edged placement explain --platform DIR`` for a
fleet, ``edged info`` on a fixture tree. Every answer says where it came from, so "8.5.2"
read off a live ``tensorrt`` module is never confused with "8.5.2, JetPack 5.1.2's default".

A row matches an L4T version when its ``l4t`` is a prefix of it (by whole numbers); the
longest prefix wins, so a point release NVIDIA names separately (36.4.3 = JetPack 6.2)
overrides its family row (36.4 = JetPack 6.1 and later 6.x). TensorRT 11.x is a separate
install on JetPack 7, never its default (DESIGN.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

__all__ = ["Release", "RELEASES", "release_for", "TensorRTVersion", "tensorrt_for", "FROM_MODULE"]

FROM_MODULE = "tensorrt module"

_JP = "https://developer.nvidia.com/embedded/jetpack-sdk-"
_ARCHIVE = "https://developer.nvidia.com/embedded/jetpack/downloads/archive-"


@dataclass(frozen=True)
class Release:
    l4t: str  # "35.4" or "36.4.3": matched as a prefix of the device's L4T version
    jetpack: str
    tensorrt: str
    cuda: str
    source: str  # NVIDIA's release page for the row


RELEASES: Tuple[Release, ...] = (
    Release("35.1", "5.0.2", "8.4.1", "11.4", _JP + "502"),
    Release("35.2", "5.1", "8.5.2", "11.4", _JP + "51"),
    Release("35.3", "5.1.1", "8.5.2", "11.4", _JP + "511"),
    Release("35.4", "5.1.2", "8.5.2", "11.4", _JP + "512"),
    Release("35.5", "5.1.3", "8.5.2", "11.4", _JP + "513"),
    Release("35.6", "5.1.4", "8.5.2", "11.4", _JP + "514"),
    Release("35.6.1", "5.1.5", "8.5.2", "11.4", _JP + "515"),
    Release("35.6.2", "5.1.5", "8.5.2", "11.4", _JP + "515"),
    Release("36.2", "6.0 DP", "8.6.2", "12.2", _JP + "60dp"),
    Release("36.3", "6.0", "8.6.2", "12.2", _JP + "60"),
    Release("36.4", "6.1", "10.3.0", "12.6", _JP + "61"),
    Release("36.4.3", "6.2", "10.3.0", "12.6", _JP + "62"),
    Release("36.4.4", "6.2.1", "10.3.0", "12.6", "https://docs.nvidia.com/jetson/jetpack/introduction"),
    Release("38.2", "7.0", "10.13.3", "13.0", _ARCHIVE + "7.0"),
    Release("38.4", "7.1", "10.13.3", "13.0", _ARCHIVE + "7.1"),
    Release("39.2", "7.2", "10.16", "13.2", "https://docs.nvidia.com/jetson/archives/r39.2/DeveloperGuide/"),
)


def _numbers(version: str) -> Tuple[int, ...]:
    parts = []
    for piece in version.strip().lstrip("rR").split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def release_for(l4t: Optional[str]) -> Optional[Release]:
    """The row for an L4T version ("35.4.1"), or None for an unknown or absent one."""
    if not l4t:
        return None
    wanted = _numbers(l4t)
    best: Optional[Release] = None
    for row in RELEASES:
        prefix = _numbers(row.l4t)
        if wanted[: len(prefix)] == prefix and (best is None or len(prefix) > len(_numbers(best.l4t))):
            best = row
    return best


@dataclass(frozen=True)
class TensorRTVersion:
    version: Optional[str]
    origin: str  # "tensorrt module", "L4T R35.4.1 → JetPack 5.1.2 default", "--tensorrt" or ""

    def as_dict(self) -> Dict[str, Optional[str]]:
        return {"version": self.version, "origin": self.origin}


def tensorrt_for(versions: Dict[str, str], l4t: Optional[str]) -> TensorRTVersion:
    """The TensorRT a machine has: the imported module's when there is one, else JetPack's
    default for its L4T release, else none."""
    if versions.get("tensorrt"):
        return TensorRTVersion(versions["tensorrt"], FROM_MODULE)
    row = release_for(l4t)
    if row is None:
        return TensorRTVersion(None, "")
    return TensorRTVersion(row.tensorrt, f"L4T R{l4t} → JetPack {row.jetpack} default")
