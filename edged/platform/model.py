"""What edged knows about the machine it runs on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional, Tuple

__all__ = ["GpuInfo", "Platform"]


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: Optional[str] = None  # "8.7"
    sm_count: Optional[int] = None
    memory_mb: Optional[int] = None
    integrated: bool = False


@dataclass(frozen=True)
class Platform:
    kind: str  # "jetson" | "dgpu" | "cpu"
    machine: str  # "aarch64", "x86_64"
    cpu_vendor: str = ""
    cpu_model: str = ""
    cpu_flags: Tuple[str, ...] = ()
    soc: Optional[str] = None  # "tegra234"
    module_part: Optional[str] = None  # "p3701-0005"
    module_name: Optional[str] = None  # "Jetson AGX Orin 64GB"
    module_source: str = ""  # "module EEPROM" | "device tree"
    model: Optional[str] = None  # device-tree marketing name
    l4t: Optional[str] = None  # "36.4.3"
    soc_family: Optional[str] = None
    soc_id: Optional[int] = None
    driver: Optional[str] = None  # NVIDIA driver version on dGPU hosts
    gpus: Tuple[GpuInfo, ...] = ()
    dla_cores: int = 0
    versions: Dict[str, str] = field(default_factory=dict)  # tensorrt, onnxruntime, cuda
    dla_source: str = ""  # "tensorrt" | "module table" | "device nodes" | "SoC default"
    jetpack: Optional[str] = None  # from the L4T release (releases.py)
    jetpack_cuda: Optional[str] = None  # the CUDA that JetPack installs
    # The TensorRT placement and plan checks assume: the imported module's, else JetPack's default.
    tensorrt_version: Optional[str] = None
    tensorrt_origin: str = ""

    def identity(self) -> Dict[str, Any]:
        """Everything about this machine that changes a plan's bytes; part of every plan key."""
        return {
            "kind": self.kind,
            "machine": self.machine,
            "soc": self.soc,
            "module_part": self.module_part,
            "l4t": self.l4t,
            "driver": self.driver,
            "gpus": [[g.name, g.compute_capability, g.sm_count] for g in self.gpus],
            "cpu_model": self.cpu_model,
            "cpu_flags": list(self.cpu_flags),
            "cuda": self.versions.get("cuda"),
        }

    def as_dict(self) -> Dict[str, Any]:
        doc = asdict(self)
        doc["gpus"] = [asdict(g) for g in self.gpus]
        return doc
