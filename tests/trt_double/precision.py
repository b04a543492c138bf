"""Reduced precision in the TensorRT TEST DOUBLE: how a plan built with BuilderFlag.FP16 or
INT8 (TensorRT up to 10.x) computes differently from the ONNX model, in two documented,
deterministic ways, so that edged's accuracy gate has something real to measure:

- FP16 (and INT8, whose layers TensorRT may also run in FP16 when both flags are set, as
  edged sets them): the model runs with float16 weights and activations (ONNX Runtime's
  float16 conversion, inputs and outputs kept float32), i.e. real half-precision
  arithmetic, not a rounding of the results.
- INT8 (implicit quantisation from an entropy calibration table): each network input is
  quantised symmetrically with its calibrated scale, q = clamp(round(x / scale), -128, 127)
  and x' = q * scale, as TensorRT quantises a tensor with a dynamic range of
  ±(127 * scale) (NVIDIA, TensorRT quantization toolkit, "Introduction to Quantization",
  docs.nvidia.com/deeplearning/tensorrt/tensorflow-quantization-toolkit/docs/docs/
  intro_to_quantization.html; IQuantizeLayer). A table calibrated on all-black images has
  scale 0, so every input becomes 0, which is how a degenerate calibration set shows.
  Quantisation of inner activations is not modelled.

TensorRT 11 has no precision flags: its plans are built from an FP16 or Q/DQ ONNX model
(edged converts it), which the double runs as it is, so nothing is emulated there.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, Mapping

import numpy as np

__all__ = ["session", "quantize_inputs"]


def session(header: Mapping[str, Any], onnx_bytes: bytes) -> Any:
    """An ONNX Runtime session computing like the plan ``header`` describes."""
    import onnxruntime

    flags = set(header.get("flags", ()))
    if flags & {"FP16", "INT8"}:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        half = convert_float_to_float16(onnx.load_from_string(onnx_bytes), keep_io_types=True)
        onnx_bytes = half.SerializeToString()
    return onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])


def _scales(table: str) -> Dict[str, float]:
    """``name: <hex of a big-endian float32>`` lines of a calibration table."""
    scales = {}
    for line in table.splitlines()[1:]:
        name, _, value = line.rpartition(": ")
        if name and name != "model":
            scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
    return scales


def quantize_inputs(header: Mapping[str, Any], feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``feeds`` as an INT8 plan sees them (unchanged for other plans)."""
    table = header.get("calibration_table")
    if "INT8" not in header.get("flags", ()) or not table:
        return feeds
    out = dict(feeds)
    for name, scale in _scales(table).items():
        if name in out:
            x = out[name].astype(np.float32)
            q = np.clip(np.round(x / scale), -128, 127) if scale > 0 else np.zeros_like(x)
            out[name] = (q * scale).astype(out[name].dtype)
    return out
