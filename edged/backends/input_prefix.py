"""Preprocessing folded into the plan: an ONNX graph prefix from uint8 frames to the model input.

Frames arrive as HWC uint8 BGR. Where the prefix is on, the plan's only input is
``FRAME_INPUT`` (uint8, [N, H, W, 3], BGR) and the engine does what the host-side
``edged.pipeline.preprocess.Preprocessor`` would otherwise do: optional resize, cast,
channel order, layout, and ``x * gain + offset`` with the same float32 constants (see
:func:`affine`), so both paths give the same values within float rounding. The host then
copies a quarter of the bytes (uint8 instead of float32) and spends no Python time on
arithmetic; ONNX Runtime runs the prefix on its own threads, TensorRT on the GPU.

The prefix's nodes are named ``NODE_PREFIX + ...``; the TensorRT builder pins the layers
the parser makes of them to the GPU on a DLA plan (the DLA cannot read uint8 frames nor
cast). The plan cache key holds :meth:`InputPrefix.key_document`, so a plan built with
another prefix, or without one, is never looked up.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edged.backends.onnx_inputs import read_model_inputs
from edged.errors import BackendError, BackendUnavailable

__all__ = ["FRAME_INPUT", "NODE_PREFIX", "PREFIX_VERSION", "InputPrefix", "affine", "model_input", "prefix_available"]

FRAME_INPUT = "edged_frames"
NODE_PREFIX = "edged_pre/"
# Bump when the graph this module writes changes: every plan built with an older prefix then misses.
PREFIX_VERSION = 2

# ONNX TensorProto element types.
_UINT8, _FLOAT, _FLOAT16, _INT64 = 2, 1, 10, 7
_DTYPES = {_FLOAT: "float32", _FLOAT16: "float16", _UINT8: "uint8"}


def affine(scale: float, mean: Sequence[float], std: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel float32 (gain, offset) with ``(x * scale - mean) / std == x * gain + offset``.
    The host path and the prefix both use these exact constants."""
    std32 = np.asarray(std, dtype=np.float32)
    gain = (np.float32(scale) / std32).astype(np.float32)
    offset = (-np.asarray(mean, dtype=np.float32) / std32).astype(np.float32)
    return gain, offset


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailable("preprocessing in the plan needs the onnx package: pip install onnx") from exc
    return onnx


def model_input(path: str) -> Tuple[str, Tuple[Optional[int], ...], str, int]:
    """Name, shape (None for symbolic dims), dtype name and opset of the model's only input.
    Raises BackendError when the model has not exactly one non-initializer input. Reads the
    protobuf directly (edged.backends.onnx_inputs): no onnx package on a warm start."""
    model = read_model_inputs(path)
    if len(model.inputs) != 1:
        raise BackendError(f"{path}: the model has {len(model.inputs)} inputs; the prefix feeds one image input")
    only = model.inputs[0]
    dtype = _DTYPES.get(only.elem_type or 0, str(only.elem_type))
    return only.name, only.shape or (), dtype, model.opset


def prefix_available() -> Optional[str]:
    """None when this host can write prefixes, else why not (without importing onnx)."""
    if importlib.util.find_spec("onnx") is None:
        return "preprocessing in the plan needs the onnx package (python3-onnx, or pip install onnx)"
    return None


@dataclass(frozen=True)
class InputPrefix:
    """What the prefix computes. ``frame_hw``: the frame size the plan takes when it also
    resizes to ``net_hw`` (a fixed size: static shapes); None: frames arrive at ``net_hw``."""

    color: str  # channel order the network expects: "rgb" | "bgr" (frames are BGR)
    layout: str  # "nchw" | "nhwc"
    scale: float
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    net_hw: Tuple[int, int]
    frame_hw: Optional[Tuple[int, int]] = None
    resize: str = "bilinear"
    # True where the prefix runs on CPU cores (ONNX Runtime): transpose and reorder the
    # uint8 frame before the cast (a quarter of the bytes moved) and normalise NCHW in one
    # BatchNormalization pass instead of Mul then Add. False for TensorRT, whose uint8
    # network inputs feed a cast first (edged.backends.tensorrt.builder pins it to the GPU).
    uint8_first: bool = False

    def key_document(self) -> Dict[str, Any]:
        doc: Dict[str, Any] = {
            "version": PREFIX_VERSION,
            "color": self.color,
            "layout": self.layout,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "net_hw": list(self.net_hw),
        }
        if self.uint8_first:
            doc["order"] = "uint8-first"
        if self.frame_hw is not None and tuple(self.frame_hw) != tuple(self.net_hw):
            doc["frame_hw"] = list(self.frame_hw)
            doc["resize"] = self.resize
        return doc

    @property
    def resizes(self) -> bool:
        return self.frame_hw is not None and tuple(self.frame_hw) != tuple(self.net_hw)

    def apply(self, model_path: str, out_dir: str) -> str:
        """Write the model with this prefix in front of its input to ``out_dir``; its path."""
        onnx = _import_onnx()
        from onnx import helper, numpy_helper

        name, _, dtype, opset = model_input(model_path)
        if dtype not in ("float32", "float16"):
            raise BackendError(f"{model_path}: input {name!r} is {dtype}; the prefix feeds float32 or float16 inputs")
        if self.resizes and opset < 11:
            raise BackendError(f"{model_path}: opset {opset} predates Resize-11; resize the frames on the host")
        model = onnx.load(model_path)
        graph = model.graph
        taken = {n for node in graph.node for n in (*node.input, *node.output)} | {i.name for i in graph.initializer}
        if FRAME_INPUT in taken or any(node.name.startswith(NODE_PREFIX) for node in graph.node):
            raise BackendError(f"{model_path}: the model already uses the name {FRAME_INPUT!r} or {NODE_PREFIX}*")
        batch = graph.input[[i.name for i in graph.input].index(name)].type.tensor_type.shape.dim[0]
        fh, fw = self.frame_hw if self.resizes else self.net_hw  # type: ignore[misc]
        frames = helper.make_tensor_value_info(FRAME_INPUT, _UINT8, [None, fh, fw, 3])
        frames.type.tensor_type.shape.dim[0].CopyFrom(batch)
        nodes: List[Any] = []
        inits: List[Any] = []

        def node(op: str, inputs: Sequence[str], **attrs: Any) -> str:
            out = f"{NODE_PREFIX}{op.lower()}{len(nodes)}"
            nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
            return out

        def const(label: str, value: np.ndarray) -> str:
            inits.append(numpy_helper.from_array(value, f"{NODE_PREFIX}{label}"))
            return f"{NODE_PREFIX}{label}"

        x = FRAME_INPUT
        if self.resizes:
            # Resize-11 on the uint8 frame (NHWC), before the cast like the host's cv2.resize.
            # Bilinear: half-pixel centres, as cv2.INTER_LINEAR; nearest: floor(dst * src/dst),
            # as cv2.INTER_NEAREST and the host's numpy fallback (onnx Operators.md, Resize).
            n = node("Slice", [node("Shape", [x]), const("zero", np.array([0])), const("one", np.array([1]))])
            sizes = node("Concat", [n, const("hwc", np.array([*self.net_hw, 3], dtype=np.int64))], axis=0)
            attrs: Dict[str, Any] = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
            if self.resize == "nearest":
                attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
            x = node("Resize", [x, "", "", sizes], **attrs)
        gain, offset = affine(self.scale, self.mean, self.std)
        if not self.uint8_first:
            x = node("Cast", [x], to=_FLOAT)
        channels = 3
        if self.layout == "nchw":
            # Transposed first: the channel swap is then three contiguous planes, not a strided gather.
            x = node("Transpose", [x], perm=[0, 3, 1, 2])
            channels = 1
        if self.color == "rgb":
            x = node("Gather", [x, const("rgb", np.array([2, 1, 0], dtype=np.int64))], axis=channels)
        if self.uint8_first:
            x = node("Cast", [x], to=_FLOAT)
        if self.uint8_first and channels == 1 and opset >= 9:
            # Inference-mode BatchNormalization with mean 0, variance 1 and epsilon 0 is
            # x * scale + B per channel: the same two float32 operations as Mul then Add.
            zeros, ones = np.zeros(3, dtype=np.float32), np.ones(3, dtype=np.float32)
            norm = [const("gain", gain), const("offset", offset), const("mean0", zeros), const("var1", ones)]
            x = node("BatchNormalization", [x, *norm], epsilon=0.0)
        else:
            shape = (1, 3, 1, 1) if channels == 1 else (3,)
            x = node("Mul", [x, const("gain", gain.reshape(shape))])
            x = node("Add", [x, const("offset", offset.reshape(shape))])
        if dtype == "float16":
            x = node("Cast", [x], to=_FLOAT16)
        nodes[-1].output[0] = name  # the last step writes the tensor the model reads
        kept = [value for value in graph.input if value.name != name]
        del graph.input[:]
        graph.input.extend([frames, *kept])
        old = list(graph.node)
        del graph.node[:]
        graph.node.extend([*nodes, *old])
        graph.initializer.extend(inits)
        out = os.path.join(out_dir, "with-prefix.onnx")
        # No onnx.checker here: ONNX Runtime's fp16 converter appends its input casts after
        # their users (a graph ONNX Runtime sorts itself, but the checker refuses); the backend
        # that loads the result names anything really wrong.
        try:
            onnx.save(model, out)
        except (OSError, ValueError) as exc:
            raise BackendError(f"{model_path}: cannot write the model with the preprocessing prefix: {exc}") from exc
        return out
