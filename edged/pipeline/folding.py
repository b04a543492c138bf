"""Whether a model's preprocessing goes into its plan, and why not when it does not.

The prefix itself is edged.backends.input_prefix; this module decides from the config, the
backend and the model's input. The host-side Preprocessor recognises a folded plan by its
input (``FRAME_INPUT``), so every caller works with either kind of plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from edged.backends.base import TensorSpec
from edged.backends.input_prefix import InputPrefix, model_input, prefix_available
from edged.config.model import ModelConfig, PluginConfig
from edged.errors import BackendError, BackendUnavailable, ConfigError
from edged.pipeline.preprocess import input_geometry
from edged.versions import version_tuple

__all__ = ["FoldDecision", "decide_folding", "fixed_frame_hw"]

# ICastLayer (uint8 frames -> float) is in the Python API from 8.6 on, absent from 8.5
# (shared/reference/tensorrt-api/8.5.json and 8.6.json, extracted from NVIDIA's bindings).
_TRT_MIN = (8, 6)


@dataclass(frozen=True)
class FoldDecision:
    prefix: Optional[InputPrefix]  # None: the host preprocesses
    reason: str  # what was folded, or why not

    def describe(self) -> str:
        where = "in the plan" if self.prefix is not None else "on the host"
        return f"preprocessing {where}: {self.reason}"


def fixed_frame_hw(source: PluginConfig) -> Optional[Tuple[int, int]]:
    """The frame size a source's config fixes, if any (files and streams do not)."""
    if source.type == "synthetic" and source.get("size"):
        size = source.get("size")
        return int(size[0]), int(size[1])
    if source.type in ("v4l2", "csi") and source.get("width") and source.get("height"):
        return int(source.get("height")), int(source.get("width"))
    return None


def _resize_hw(model: ModelConfig, backend: str, net_hw: Tuple[int, int]) -> Tuple[Optional[Tuple[int, int]], str]:
    pre = model.preprocess
    if not pre.fold_resize:
        return None, "resize on the host"
    if backend != "onnxruntime":
        return None, "resize on the host (preprocess.fold_resize is for onnxruntime only)"
    if pre.letterbox:
        return None, "resize on the host (preprocess.fold_resize does not letterbox)"
    if pre.size is None:
        return None, "resize on the host (preprocess.fold_resize needs preprocess.size)"
    frame_hw = fixed_frame_hw(model.source)
    if frame_hw is None:
        return None, f"resize on the host (preprocess.fold_resize: the {model.source.type} source has no fixed size)"
    if frame_hw == net_hw:
        return None, "frames already at the network size"
    return frame_hw, f"resize {frame_hw[0]}x{frame_hw[1]} -> {net_hw[0]}x{net_hw[1]} in the plan"


def decide_folding(
    model: ModelConfig, backend: str, backend_version: str, precision: str = "fp32", core_kept: str = ""
) -> FoldDecision:
    """The prefix to fold into ``model``'s ``precision`` plans on ``backend``, or why the host
    keeps it. ``core_kept``: how a CPU engine's threads leave a core to edged's own
    (edged.backends.onnxruntime.cores), empty where they do not or the batch is 1."""
    pre = model.preprocess
    if not pre.fold:
        return FoldDecision(None, "preprocess.fold is false")
    if core_kept:
        # ONNX Runtime runs the prefix's operators on one thread while the rest of the pool
        # waits, for every frame of the batch; on the kept core the host does the same work
        # beside the engine. 16 cores, MobileNetV2-shaped, batch 8: 0.76-0.85 of the engine
        # alone folded, 0.85-0.96 on the host (docs/preprocessing.md).
        return FoldDecision(None, f"the host preprocesses on the core the engine leaves free ({core_kept})")
    if backend == "tensorrt" and precision == "int8" and version_tuple(backend_version)[:2] < (11,):
        # Implicit quantisation calibrates on what the host feeds the network input; the
        # calibrator is built for float samples (edged.backends.calibration).
        return FoldDecision(None, f"int8 on TensorRT {backend_version} calibrates on host-preprocessed inputs")
    if model.format.type != "onnx":
        return FoldDecision(None, f"the model is {model.format.type}; the prefix is an ONNX graph")
    if backend not in ("onnxruntime", "tensorrt"):
        return FoldDecision(None, f"the {backend} backend takes no graph prefix")
    if backend == "tensorrt" and version_tuple(backend_version)[:2] < _TRT_MIN:
        return FoldDecision(None, f"TensorRT {backend_version} has no cast layer for uint8 frames (8.6 and newer)")
    if pre.dtype == "uint8":
        return FoldDecision(None, "preprocess.dtype is uint8: the model takes frames as they are")
    missing = prefix_available()
    if missing is not None:
        return FoldDecision(None, missing)
    try:
        name, shape, dtype, _ = model_input(model.path)
    except (BackendError, BackendUnavailable) as exc:
        return FoldDecision(None, str(exc))
    if dtype not in ("float32", "float16"):
        return FoldDecision(None, f"the model input {name!r} is {dtype}, not float")
    channels = (shape[1] if pre.layout == "nchw" else shape[3]) if len(shape) == 4 else None
    if len(shape) != 4 or channels not in (None, 3):
        return FoldDecision(None, f"the model input {name!r} of shape {list(shape)} is not a 3-channel image")
    try:
        net_hw = input_geometry(TensorSpec(name, shape, dtype), pre)
    except ConfigError as exc:
        return FoldDecision(None, str(exc))
    frame_hw, resize_note = _resize_hw(model, backend, net_hw)
    prefix = InputPrefix(
        color=pre.color,
        layout=pre.layout,
        scale=pre.scale,
        mean=pre.mean,
        std=pre.std,
        net_hw=net_hw,
        frame_hw=frame_hw,
        resize=pre.resize,
        uint8_first=backend == "onnxruntime",
    )
    return FoldDecision(prefix, f"uint8 frames; cast, {pre.color}, {pre.layout}, mean/std and {resize_note}")
