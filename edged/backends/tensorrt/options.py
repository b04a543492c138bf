"""TensorRT build settings read from BuildOptions, validated before any TensorRT call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from edged.backends.base import BuildOptions
from edged.errors import BackendError

__all__ = ["TrtOptions", "parse_options", "DLA_POOLS", "CONTEXT_SLOTS"]

# extra["dla_pools"] key -> MemoryPoolType member.
DLA_POOLS = {
    "managed_sram": "DLA_MANAGED_SRAM",
    "local_dram": "DLA_LOCAL_DRAM",
    "global_dram": "DLA_GLOBAL_DRAM",
}
_MIN_POOL = 4096
# Execution contexts a runner keeps busy at once (copies of one batch overlap the compute of
# the other). A dynamic-shape plan gets one optimisation profile per context: "each execution
# context in concurrent use must use a separate optimization profile" (NvInferRuntime.h, class
# IExecutionContext, 8.5.2 to v11.1), and 8.5/8.6 refuse a profile another context holds.
CONTEXT_SLOTS = 2


@dataclass(frozen=True)
class TrtOptions:
    precision: str
    dla_core: Optional[int]  # None: GPU
    gpu_fallback: bool
    batch: int
    workspace_bytes: int
    dla_pools: Dict[str, int] = field(default_factory=dict)  # MemoryPoolType member -> bytes
    layer_devices: Dict[str, str] = field(default_factory=dict)  # layer name -> "gpu" | "dla"
    state_dir: Optional[str] = None
    gpu_index: int = 0  # the CUDA device the plan is built and run on
    require_timing_cache_hits: bool = False  # fail a build that would time any tactic afresh (10.x+)


def _gpu_index(device: str) -> int:
    # DLA cores exist on Jetsons only, which have a single GPU: device 0 drives them.
    if device.startswith("gpu") and device[3:].isdigit():
        return int(device[3:])
    return 0


def _dla_core(device: str) -> Optional[int]:
    if device in ("gpu", "auto") or (device.startswith("gpu") and device[3:].isdigit()):
        return None
    if device == "dla":
        return 0
    if device.startswith("dla") and device[3:].isdigit():
        return int(device[3:])
    raise BackendError(f"device: tensorrt cannot run on {device!r}; use gpu, dla0 or dla1")


def parse_options(options: BuildOptions) -> TrtOptions:
    if options.precision not in ("fp32", "fp16", "int8"):
        raise BackendError(f"precision: {options.precision!r} is not fp32, fp16 or int8")
    pools: Dict[str, int] = {}
    for key, value in dict(options.extra.get("dla_pools") or {}).items():
        if key not in DLA_POOLS:
            raise BackendError(f"tensorrt.dla_pools.{key}: unknown pool; use {', '.join(sorted(DLA_POOLS))}")
        size = int(value)
        # TensorRT rejects DLA pool sizes that are not powers of two of at least 4 KiB.
        if size < _MIN_POOL or size & (size - 1):
            raise BackendError(f"tensorrt.dla_pools.{key}: {size} bytes is not a power of two >= 4096")
        pools[DLA_POOLS[key]] = size
    layers: Dict[str, str] = {}
    for name, device in dict(options.extra.get("layer_devices") or {}).items():
        if device not in ("gpu", "dla"):
            raise BackendError(f"tensorrt.layer_devices.{name}: {device!r} is not gpu or dla")
        layers[str(name)] = str(device)
    if options.workspace_bytes < 0:
        raise BackendError("tensorrt.workspace_mib: must not be negative")
    state = options.extra.get("state_dir")
    return TrtOptions(
        precision=options.precision,
        dla_core=_dla_core(options.device),
        gpu_fallback=options.gpu_fallback,
        batch=options.batch,
        workspace_bytes=options.workspace_bytes,
        dla_pools=pools,
        layer_devices=layers,
        state_dir=str(state) if state else None,
        gpu_index=_gpu_index(options.device),
        require_timing_cache_hits=bool(options.extra.get("require_timing_cache_hits", False)),
    )


def profile_shapes(shape: Tuple[int, ...], batch: int) -> Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]:
    """min/opt/max for an input whose only dynamic axis is the leading batch axis."""
    rest = shape[1:]
    if any(d < 0 for d in rest):
        raise BackendError(
            f"input shape {list(shape)}: only the batch axis may be dynamic; export the model with fixed H, W, C"
        )
    return (1, *rest), (batch, *rest), (batch, *rest)
