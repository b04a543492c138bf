"""Reduced-precision versions of an ONNX model, made with ONNX Runtime's own tools.

- fp16: every float tensor and initializer becomes float16 (inputs and outputs stay float32,
  with casts at the edges, so callers feed the same arrays).
- int8: Q/DQ (QuantizeLinear/DequantizeLinear) nodes with symmetric int8 scales from static
  calibration over the configured calibration images, the explicit-quantisation form that
  TensorRT 10+ and 11's strongly typed builds consume and ONNX Runtime runs on the CPU.

Used by the ONNX Runtime backend for every version and by the TensorRT backend on 11.x,
which removed the FP16/INT8 builder flags; one config therefore works on both.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, Optional

import numpy as np

from edged.backends.base import TensorSpec
from edged.backends.calibration import CalibrationSet
from edged.errors import BackendError, BackendUnavailable

__all__ = ["convert_model", "to_fp16", "quantize_qdq"]

_ONNX_TYPES = {1: "float32", 10: "float16", 2: "uint8", 3: "int8", 6: "int32", 7: "int64"}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailable("precision fp16/int8 conversion needs the onnx package: pip install onnx") from exc
    return onnx


def to_fp16(model_path: str, out_path: str, keep_io_types: bool = True) -> str:
    onnx = _import_onnx()
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise BackendUnavailable("precision fp16 conversion needs onnxruntime: pip install onnxruntime") from exc
    model = onnx.load(model_path)
    converted = convert_float_to_float16(model, keep_io_types=keep_io_types)
    onnx.save(converted, out_path)
    return out_path


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a CalibrationSet."""

    def __init__(self, batches: Iterator[np.ndarray], input_name: str) -> None:
        self._batches = batches
        self._name = input_name

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}

    def rewind(self) -> None:
        raise BackendError("calibration data can be read once per quantisation")


def _input_spec(model: Any) -> TensorSpec:
    inits = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in inits]
    if len(inputs) != 1:
        raise BackendError(f"calibration: int8 calibration feeds one image input; the model has {len(inputs)}")
    value = inputs[0]
    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    return TensorSpec(value.name, shape, _ONNX_TYPES.get(tensor.elem_type, "float32"))


def quantize_qdq(model_path: str, out_path: str, calibration: CalibrationSet) -> str:
    onnx = _import_onnx()
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise BackendUnavailable("precision int8 quantisation needs onnxruntime: pip install onnxruntime") from exc
    spec = _input_spec(onnx.load(model_path, load_external_data=False))
    reader = _Reader(calibration.batches(spec, 1), spec.name)
    quantize_static(
        model_path,
        out_path,
        reader,  # type: ignore[arg-type]
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.Entropy,  # the same criterion as TensorRT's entropy calibrator
        # TensorRT accepts only symmetric (zero-point 0) int8 quantisation.
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return out_path


def convert_model(
    model_path: str, precision: str, out_dir: str, calibration: Optional[CalibrationSet], keep_io_types: bool = True
) -> str:
    """Path of ``model_path`` converted to ``precision`` inside ``out_dir``. With
    ``keep_io_types`` an fp16 model keeps float32 inputs and outputs behind Cast nodes."""
    if precision == "fp32":
        return model_path
    if precision == "fp16":
        return to_fp16(model_path, os.path.join(out_dir, "model-fp16.onnx"), keep_io_types)
    if precision == "int8":
        if calibration is None:
            raise BackendError("calibration.images: precision int8 needs a folder of calibration images")
        return quantize_qdq(model_path, os.path.join(out_dir, "model-int8-qdq.onnx"), calibration)
    raise BackendError(f"precision: {precision!r} is not fp32, fp16 or int8")
