"""What placement needs to know about a machine: SoC, DLA cores, TensorRT version, GPUs.

A :class:`Target` comes from platform discovery (:func:`from_platform`, duck-typed on the
``edged.platform`` Platform: ``soc``, ``dla_cores``, ``gpus``, TensorRT version) or from a
named preset modelled on the published specification of each board (DESIGN.md §2). Presets
are descriptions, not hardware: they let ``edged placement explain`` answer "what would
happen on an Orin NX 8GB" from any machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edged.errors import PlacementError
from edged.placement.boards import BOARDS, JETPACKS
from edged.platform.releases import release_for
from edged.trt_releases import dla_supported

__all__ = ["Target", "PRESETS", "preset", "from_platform", "resolve_target", "with_tensorrt", "GPU", "CPU"]

GPU = "gpu"
CPU = "cpu"

# SoC → DLA generation (1: Xavier "DLA 1.0", 2: Orin "DLA 2.0"); Thor has none.
_DLA_GENERATION = {"tegra194": 1, "tegra234": 2}


@dataclass(frozen=True)
class Target:
    name: str
    soc: Optional[str]  # tegra194 | tegra234 | tegra264 | None (not a Jetson)
    dla_cores: int
    trt_version: Optional[str]  # None: no TensorRT, models run on ONNX Runtime
    gpus: Tuple[str, ...] = ()
    # Relative speed and active power of each engine class, for estimates before any
    # measurement (see profiles.py); keys "gpu", "dla" (and "gpu1".. on multi-GPU hosts).
    speed: Tuple[Tuple[str, float], ...] = ()
    # Where trt_version came from: "tensorrt module", "L4T R35.4.1 → JetPack 5.1.2 default", "--tensorrt".
    trt_origin: str = ""

    @property
    def dla_generation(self) -> Optional[int]:
        return _DLA_GENERATION.get(self.soc or "") if self.dla_cores else None

    def devices(self) -> List[str]:
        """Devices a model can be placed on, in a fixed order (the solver's tie-break)."""
        if not self.gpus or self.trt_version is None:
            return [GPU] if self.gpus else [CPU]
        gpus = [GPU] if len(self.gpus) == 1 else [f"gpu{i}" for i in range(len(self.gpus))]
        return [f"dla{i}" for i in range(self.dla_cores)] + gpus

    def speed_of(self, device: str) -> float:
        table = dict(self.speed)
        key = "dla" if device.startswith("dla") else device
        return table.get(key, table.get(GPU, 1.0))

    def as_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "soc": self.soc,
            "dla_cores": self.dla_cores,
            "dla_generation": self.dla_generation,
            "tensorrt": self.trt_version,
            "tensorrt_origin": self.trt_origin,
            "gpus": list(self.gpus),
            "devices": self.devices(),
        }


def _board_presets() -> List[Target]:
    out = []
    for board in BOARDS:
        for suffix in board.jetpacks:
            l4t = JETPACKS[suffix]
            row = release_for(l4t)
            assert row is not None, l4t
            trt = ".".join(row.tensorrt.split(".")[:2])
            origin = f"L4T R{l4t} → JetPack {row.jetpack} default"
            out.append(
                Target(f"{board.name}-{suffix}", board.soc, board.dla_cores, trt, (board.gpu,), board.speed, origin)
            )
        out.append(replace(out[-1], name=board.name))
    return out


PRESETS: Dict[str, Target] = {
    t.name: t
    for t in (
        *_board_presets(),
        Target("x86-dgpu", None, 0, "10.3", ("NVIDIA RTX A4000",), (("gpu", 3.0),), "preset"),
        Target(
            "x86-2dgpu", None, 0, "10.3", ("NVIDIA RTX 4090", "NVIDIA T4"), (("gpu0", 8.0), ("gpu1", 1.2)), "preset"
        ),
        Target("x86-cpu", None, 0, None, (), (("cpu", 0.05),)),
    )
}


def with_tensorrt(target: Target, version: str) -> Target:
    """``target`` analysed as if it ran TensorRT ``version`` ("8.6", "10.3.0")."""
    if not re.fullmatch(r"\d+\.\d+(\.\d+)*", version):
        raise PlacementError(f"--tensorrt {version!r}: not a TensorRT version (expected e.g. 8.6 or 10.3)")
    if not target.gpus:
        raise PlacementError(f"--tensorrt {version}: {target.name} has no GPU for TensorRT to run on")
    return replace(target, trt_version=".".join(version.split(".")[:2]), trt_origin="--tensorrt")


def preset(name: str) -> Target:
    try:
        return PRESETS[name]
    except KeyError:
        raise PlacementError(f"unknown platform {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def from_platform(platform: Any, name: str = "") -> Target:
    """A Target from ``edged.platform``'s Platform (read by attribute, so this module does
    not depend on that one's internals)."""
    soc = getattr(platform, "soc", None)
    dla = int(getattr(platform, "dla_cores", 0) or 0)
    infos = tuple(getattr(platform, "gpus", ()) or ())
    gpus = tuple(str(getattr(g, "name", g)) for g in infos)
    versions = getattr(platform, "versions", None) or {}
    trt = (
        getattr(platform, "tensorrt_version", None)
        or getattr(platform, "trt_version", None)
        or versions.get("tensorrt")
    )
    origin = str(getattr(platform, "tensorrt_origin", "") or ("tensorrt module" if trt else ""))
    # Rules are keyed by major.minor; TensorRT without a GPU serves nothing, so the config's device stands.
    trt = ".".join(str(trt).split(".")[:2]) if trt and gpus else None
    if trt and not dla_supported(trt):
        dla = 0  # an Orin's cores are there, but TensorRT 11.0-11.3 cannot drive them
    similar = [t for t in PRESETS.values() if t.soc == soc and t.dla_cores == dla and soc]
    speed = similar[0].speed if similar else _dgpu_speeds(infos)
    label = name or str(getattr(platform, "model", "") or soc or "host")
    if trt is None and soc in ("tegra194", "tegra234") and dla:
        # No module and no known L4T release: the newest JetPack each SoC runs, said so.
        trt = "8.5" if soc == "tegra194" else "10.3"
        origin = f"no TensorRT module and no known L4T release; assumed the newest JetPack for {soc}"
    return Target(label, soc, dla, str(trt) if trt else None, gpus, speed, origin if trt else "")


# SMs of the reference GPU (AGX Orin: 16 Ampere SMs = speed 1.0). A discrete GPU's speed
# before any measurement is its SM count over this: an estimate that ignores clocks and
# architecture, replaced by measured profiles once a plan has run.
_REFERENCE_SMS = 16


def _dgpu_speeds(infos: Tuple[Any, ...]) -> Tuple[Tuple[str, float], ...]:
    speeds = [float(getattr(g, "sm_count", 0) or _REFERENCE_SMS) / _REFERENCE_SMS for g in infos]
    if len(speeds) <= 1:
        return ((GPU, speeds[0] if speeds else 1.0),)
    return ((GPU, speeds[0]), *((f"gpu{i}", v) for i, v in enumerate(speeds)))


def resolve_target(spec: str) -> Target:
    """``spec`` is a preset name or a platform fixture tree (a root path)."""
    if spec in PRESETS:
        return PRESETS[spec]
    root = Path(spec)
    if not root.is_dir():
        raise PlacementError(f"--platform {spec!r}: not a known platform ({', '.join(sorted(PRESETS))}) or a directory")
    from edged.platform import discover

    return from_platform(discover(str(root)), name=root.name)
