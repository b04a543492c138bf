"""Platform discovery: a pure function of a root path, plus optional library probes.

``discover(root)`` reads only files under ``root`` (``/`` in production, a fixture tree
in tests). Facts that no file holds (a dGPU's compute capability and SM count, the
installed TensorRT and ONNX Runtime versions) come from probes that are passed in; the
production defaults ask NVML / the CUDA layer and import the libraries lazily.
"""

from __future__ import annotations

import glob
import importlib
import os
import platform as pyplatform
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edged.platform.dla_nodes import dla_nodes
from edged.platform.jetson import (
    MODULES,
    SOC_DLA_DEFAULT,
    SOC_GPU,
    arm_cpu_name,
    compatible,
    l4t_release,
    module_identity,
)
from edged.platform.model import GpuInfo, Platform
from edged.platform.releases import release_for, tensorrt_for

__all__ = ["discover", "probe_versions", "probe_dgpus", "ORT_CPU_FLAGS"]

# CPU features that select ONNX Runtime's (MLAS) kernels, so an optimised model built
# on one CPU may not suit another.
ORT_CPU_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vnni",
    "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "asimdhp", "fphp", "sve", "sve2", "i8mm", "bf16",
)  # fmt: skip

VersionProbe = Callable[[], Dict[str, str]]
GpuProbe = Callable[[], Sequence[GpuInfo]]


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace").strip("\0\n ")
    except OSError:
        return None


def _cpu(root: str) -> Tuple[str, str, Tuple[str, ...]]:
    text = _read(os.path.join(root, "proc/cpuinfo")) or ""
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in fields:
            fields[key] = value.strip()
    vendor = fields.get("vendor_id") or fields.get("CPU implementer", "")
    model = fields.get("model name") or fields.get("CPU part", "")
    named = arm_cpu_name(vendor, model) if "model name" not in fields else None
    if named:
        model = f"{named} ({model})"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return vendor, model, tuple(f for f in ORT_CPU_FLAGS if f in flags)


def probe_versions(cuda: bool = True) -> Dict[str, str]:
    """Installed inference library versions (absent ones are left out). Asking CUDA
    creates a GPU context (over 100 MB of host memory), so callers serving only CPU
    models pass ``cuda=False``."""
    versions = {}
    for name, module in (("tensorrt", "tensorrt"), ("onnxruntime", "onnxruntime")):
        try:
            versions[name] = str(importlib.import_module(module).__version__)
        except Exception:  # any import failure means "not usable here"
            continue
    if not cuda:
        return versions
    try:
        from edged.cuda import load_runtime

        version = load_runtime().runtime_version()
        versions["cuda"] = f"{version // 1000}.{version % 1000 // 10}"
    except Exception:  # no libcudart or no driver: no CUDA version to key plans by
        pass
    return versions


def probe_dgpus() -> List[GpuInfo]:
    """Discrete GPUs through the CUDA layer; empty where no driver answers."""
    try:
        from edged.cuda import load_runtime

        gpus = []
        for index in range(load_runtime().device_count()):
            props = load_runtime(index).properties()
            major, minor = props.compute_capability
            memory_mb = props.total_memory_bytes // (1 << 20)
            gpus.append(GpuInfo(props.name, f"{major}.{minor}", props.sm_count, memory_mb, props.integrated))
        return gpus
    except Exception:  # no libcudart or no driver answers
        return []


def _machine_of(root: str) -> str:
    # Arm kernels list "Features" in /proc/cpuinfo, x86 kernels "flags".
    return "aarch64" if "Features" in (_read(os.path.join(root, "proc/cpuinfo")) or "") else "x86_64"


def _dgpu_names(root: str) -> List[str]:
    names = []
    for info in sorted(glob.glob(os.path.join(root, "proc/driver/nvidia/gpus/*/information"))):
        for line in (_read(info) or "").splitlines():
            if line.startswith("Model:"):
                names.append(line.split(":", 1)[1].strip())
    return names


def _driver(root: str) -> Optional[str]:
    text = _read(os.path.join(root, "proc/driver/nvidia/version")) or ""
    for token in text.split():
        if token.count(".") in (1, 2) and token.replace(".", "").isdigit():
            return token
    return None


def _dla_cores(soc: Optional[str], part: Optional[str]) -> int:
    """TensorRT's own count, when it can be imported; -1 when it cannot."""
    try:
        import tensorrt as trt

        return int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)
    except Exception:
        return -1


def _dla_without_tensorrt(root: str, soc: str, part: Optional[str]) -> Tuple[int, str]:
    if part in MODULES:
        return MODULES[str(part)].dla_cores, "module table"
    nodes = dla_nodes(root)
    if nodes:
        return len(nodes), "device nodes"
    return SOC_DLA_DEFAULT.get(soc, 0), "SoC default"


def discover(
    root: str = "/",
    versions: Optional[VersionProbe] = None,
    gpu_probe: Optional[GpuProbe] = None,
    dla_probe: Optional[Callable[[Optional[str], Optional[str]], int]] = None,
) -> Platform:
    versions_found = (versions or probe_versions)()
    vendor, cpu_model, flags = _cpu(root)
    machine = pyplatform.machine() if root == "/" else _machine_of(root)
    entries = compatible(root)
    # The SoC entry is "nvidia,tegraNNN"; L4T R35 trees add a family entry "nvidia,tegra23x" after it.
    soc = next((e.split(",", 1)[1] for e in entries if re.fullmatch(r"nvidia,tegra\d+", e)), None)
    if soc:
        part, part_source = module_identity(root)
        module = MODULES.get(part or "")
        gpu_name, cc = SOC_GPU.get(soc, ("integrated GPU", ""))
        soc_id = _read(os.path.join(root, "sys/devices/soc0/soc_id"))
        dla = (dla_probe or _dla_cores)(soc, part)
        dla_source = "tensorrt"
        if dla < 0:
            dla, dla_source = _dla_without_tensorrt(root, soc, part)
        l4t = l4t_release(root)
        release = release_for(l4t)
        tensorrt = tensorrt_for(versions_found, l4t)
        return Platform(
            kind="jetson",
            machine=machine,
            cpu_vendor=vendor,
            cpu_model=cpu_model,
            cpu_flags=flags,
            soc=soc,
            module_part=part,
            module_name=module.name if module else None,
            module_source=part_source,
            model=_read(os.path.join(root, "proc/device-tree/model")),
            l4t=l4t,
            soc_family=_read(os.path.join(root, "sys/devices/soc0/family")),
            soc_id=int(soc_id) if soc_id and soc_id.isdigit() else None,
            gpus=(GpuInfo(gpu_name, cc or None, module.gpu_sms if module else None, None, True),),
            dla_cores=dla,
            versions=versions_found,
            dla_source=dla_source,
            jetpack=release.jetpack if release else None,
            jetpack_cuda=release.cuda if release else None,
            tensorrt_version=tensorrt.version,
            tensorrt_origin=tensorrt.origin,
        )
    names = _dgpu_names(root)
    if names:
        probed = list((gpu_probe or probe_dgpus)())
        gpus = tuple(probed) if probed else tuple(GpuInfo(name) for name in names)
        tensorrt = tensorrt_for(versions_found, None)
        return Platform(
            "dgpu",
            machine,
            vendor,
            cpu_model,
            flags,
            driver=_driver(root),
            gpus=gpus,
            versions=versions_found,
            tensorrt_version=tensorrt.version,
            tensorrt_origin=tensorrt.origin,
        )
    tensorrt = tensorrt_for(versions_found, None)
    return Platform(
        "cpu",
        machine,
        vendor,
        cpu_model,
        flags,
        versions=versions_found,
        tensorrt_version=tensorrt.version,
        tensorrt_origin=tensorrt.origin,
    )
