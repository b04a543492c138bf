"""ONNX op → TensorRT layer(s), as NVIDIA's ONNX parser (onnx-tensorrt) builds them.

The DLA judges TensorRT layers, not ONNX ops, and the two differ in ways that decide
placement: GlobalAveragePool becomes a Reduce (not a Pooling layer), Gemm and MatMul become
MatrixMultiply, HardSwish becomes a hard-sigmoid Activation plus a product, Flatten and
Squeeze become Shuffles. Sources: onnx-tensorrt 8.5-GA builtin_op_importers.cpp and 10.1-GA
onnxOpImporters.cpp (fact sheet §4).
"""

from __future__ import annotations

from typing import Dict, Tuple

__all__ = ["trt_layers", "ELIDED_OPS", "NO_DLA_OPS", "UNARY_OPS"]

# Ops the builder removes at inference time; they take no device.
ELIDED_OPS = frozenset({"Dropout", "Identity"})

_SIMPLE: Dict[str, Tuple[str, ...]] = {
    "Conv": ("Convolution",),
    "ConvTranspose": ("Deconvolution",),
    "BatchNormalization": ("Scale",),
    "Relu": ("Activation(RELU)",),
    "LeakyRelu": ("Activation(LEAKY_RELU)",),
    "Sigmoid": ("Activation(SIGMOID)",),
    "Tanh": ("Activation(TANH)",),
    "Clip": ("Activation(CLIP)",),
    "HardSigmoid": ("Activation(HARD_SIGMOID)",),
    "HardSwish": ("Activation(HARD_SIGMOID)", "ElementWise(PROD)"),
    "Softplus": ("Activation(SOFTPLUS)",),
    "Elu": ("Activation(ELU)",),
    "Selu": ("Activation(SELU)",),
    "Softsign": ("Activation(SOFTSIGN)",),
    "ThresholdedRelu": ("Activation(THRESHOLDED_RELU)",),
    "Gelu": ("Activation(GELU)",),
    "Mish": ("Activation(SOFTPLUS)", "Activation(TANH)", "ElementWise(PROD)"),
    "PRelu": ("ParametricReLU",),
    "Add": ("ElementWise(SUM)",),
    "Sum": ("ElementWise(SUM)",),
    "Sub": ("ElementWise(SUB)",),
    "Mul": ("ElementWise(PROD)",),
    "Div": ("ElementWise(DIV)",),
    "Pow": ("ElementWise(POW)",),
    "Max": ("ElementWise(MAX)",),
    "Min": ("ElementWise(MIN)",),
    "Equal": ("ElementWise(EQUAL)",),
    "Greater": ("ElementWise(GREATER)",),
    "Less": ("ElementWise(LESS)",),
    "MaxPool": ("Pooling(MAX)",),
    "AveragePool": ("Pooling(AVERAGE)",),
    "LpPool": ("Pooling(LP)",),
    "GlobalAveragePool": ("Reduce(AVG)",),
    "GlobalMaxPool": ("Reduce(MAX)",),
    "ReduceMean": ("Reduce(AVG)",),
    "ReduceMax": ("Reduce(MAX)",),
    "ReduceMin": ("Reduce(MIN)",),
    "ReduceSum": ("Reduce(SUM)",),
    "ReduceProd": ("Reduce(PROD)",),
    "Gemm": ("MatrixMultiply", "ElementWise(SUM)"),
    "MatMul": ("MatrixMultiply",),
    "Flatten": ("Shuffle",),
    "Reshape": ("Shuffle",),
    "Transpose": ("Shuffle",),
    "Squeeze": ("Shuffle",),
    "Unsqueeze": ("Shuffle",),
    "Concat": ("Concatenation",),
    "Split": ("Slice",),
    "Slice": ("Slice",),
    "Pad": ("Slice(FILL)",),
    "Resize": ("Resize",),
    "Upsample": ("Resize",),
    "Softmax": ("SoftMax",),
    "LRN": ("LRN",),
    "Abs": ("Unary(ABS)",),
    "InstanceNormalization": ("Normalization",),
    "GroupNormalization": ("Normalization",),
    "LayerNormalization": ("Normalization",),
    "Gather": ("Gather",),
    "GatherElements": ("Gather",),
    "GatherND": ("Gather",),
    "Shape": ("Shape",),
    "ConstantOfShape": ("Fill",),
    "Range": ("Fill",),
    "Where": ("Select",),
    "TopK": ("TopK",),
    "NonMaxSuppression": ("Plugin(NMS)",),
    "Einsum": ("Einsum",),
    "ScatterND": ("Scatter",),
    "ScatterElements": ("Scatter",),
    "Loop": ("Loop",),
    "If": ("Conditional",),
    "Cast": ("Identity/Cast",),
    "Expand": ("Slice",),
    "Tile": ("Slice",),
    "QuantizeLinear": ("Quantize",),
    "DequantizeLinear": ("Dequantize",),
    "Constant": ("Constant",),
}

# Ops whose TensorRT layers have no DLA implementation (fact sheet §3.17): normalization,
# gather, shape arithmetic, NMS and other plugins, loops, padding, scatter, Q/DQ.
NO_DLA_OPS = frozenset(
    [
        "InstanceNormalization",
        "GroupNormalization",
        "LayerNormalization",
        "Gather",
        "GatherElements",
        "GatherND",
        "Shape",
        "ConstantOfShape",
        "Range",
        "Where",
        "TopK",
        "NonMaxSuppression",
        "Einsum",
        "ScatterND",
        "ScatterElements",
        "Loop",
        "If",
        "Cast",
        "Expand",
        "Tile",
        "Pad",
        "QuantizeLinear",
        "DequantizeLinear",
    ]
)

# ONNX unary ops the parser imports as IUnaryLayer.
UNARY_OPS = (
    "Abs",
    "Sin",
    "Cos",
    "Atanh",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Erf",
    "Not",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
)


def trt_layers(op: str) -> Tuple[str, ...]:
    """The TensorRT layer type(s) the ONNX parser creates for ``op``; ('?',) if unknown."""
    if op in _SIMPLE:
        return _SIMPLE[op]
    if op in UNARY_OPS:
        return (f"Unary({op.upper()})",)
    return ("?",)
