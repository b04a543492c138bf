"""Deserialising plans and reading back where each layer landed."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from edged.backends.tensorrt.api import LogTail, TrtApi
from edged.errors import PlanError

__all__ = ["deserialize", "layer_placement"]


def deserialize(api: TrtApi, logger: Any, tail: LogTail, plan: bytes, dla_core: Optional[int]) -> Tuple[Any, Any]:
    """(engine, runtime) for ``plan``, or PlanError with TensorRT's own reason.

    ``runtime.DLA_core`` must be set before deserialising: the core is chosen then, and an
    engine loaded without it runs on DLA0 whatever it was built for.
    """
    runtime = api.trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = dla_core
    mark = tail.mark()
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        reasons = tail.errors_since(mark) or ["deserialize_cuda_engine returned None without logging a reason"]
        raise PlanError(f"TensorRT {api.version_string} cannot load this plan: " + " | ".join(reasons))
    # The runtime must outlive its engines; keep it reachable from the engine's owner.
    return engine, runtime


def _device_of(name: str, entry: Dict[str, Any], dla_core: Optional[int]) -> str:
    # DLA subgraphs show up as "{ForeignNode[first...last]}". Myelin subgraphs on the GPU use
    # the same form, so a ForeignNode only means DLA in an engine built for a DLA core;
    # "... to nvm" / "... from nvm" are the GPU-side reformats around a DLA subgraph.
    layer_type = str(entry.get("LayerType", ""))
    if dla_core is not None and name.startswith("{ForeignNode[") and layer_type.lower() != "myelin":
        return f"dla{dla_core}"
    return "gpu"


def layer_placement(api: TrtApi, engine: Any, dla_core: Optional[int]) -> List[Dict[str, Any]]:
    """One entry per engine layer: its name, type (when the plan has DETAILED profiling
    information) and device, from the engine inspector's JSON."""
    trt = api.trt
    inspector = engine.create_engine_inspector()
    raw = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        layers = json.loads(raw).get("Layers", [])
    except ValueError:
        return [{"layer": "?", "device": "unknown", "note": "engine inspector returned no JSON"}]
    placement = []
    for item in layers:
        entry = item if isinstance(item, dict) else {"Name": str(item)}
        name = str(entry.get("Name", "?"))
        row = {"layer": name, "device": _device_of(name, entry, dla_core)}
        if "LayerType" in entry:
            row["type"] = str(entry["LayerType"])
        placement.append(row)
    return placement
