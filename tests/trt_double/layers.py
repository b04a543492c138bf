"""Network-definition API of the TensorRT test double (add_input, add_convolution_nd,
add_activation, add_fully_connected, mark_output): the layers a network builder or the
Caffe parser adds are recorded and turned into an ONNX graph at build time, so the plan
runs in ONNX Runtime like every other plan of the double.

Modelling choices: tensors get TensorRT's default names ("(Unnamed Layer* N) [Kind]_output")
unless a parser names them; a fully connected layer's output is (N, K, 1, 1) as in 8.x.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from tests.trt_double import build
from tests.trt_double.build import ILayer

_ACTIVATIONS = {"RELU": "Relu", "SIGMOID": "Sigmoid", "TANH": "Tanh"}


class _LayerWithOutputs(ILayer):
    _outputs: List[Any]

    def get_output(self, index: int) -> Any:
        return self._outputs[index]

    num_outputs = property(lambda self: len(self._outputs))


class IConvolutionLayer(_LayerWithOutputs):
    _trt_class = "IConvolutionLayer"


class IActivationLayer(_LayerWithOutputs):
    _trt_class = "IActivationLayer"


class IFullyConnectedLayer(_LayerWithOutputs):
    _trt_class = "IFullyConnectedLayer"


def _array(weights: Any, what: str) -> np.ndarray:
    array = np.asarray(weights, dtype=np.float32)
    if array.size == 0:
        raise TypeError(f"{what}: empty weights")
    return array


class NetworkApi:
    """Mixed into the double's INetworkDefinition."""

    _double: Any
    _trt: Any
    _model: Any

    def _api_init(self) -> None:
        self._recorded: List[Tuple[str, Any, List[Any], List[Any], dict]] = []  # (op, layer, inputs, outputs, attrs)
        self._api_inputs: List[Any] = []
        self._api_outputs: List[Any] = []
        self._weights: List[Tuple[str, np.ndarray]] = []

    def _tensor(self, kind: str, shape: Tuple[int, ...]) -> Any:
        name = f"(Unnamed Layer* {len(self._recorded)}) [{kind}]_output"
        return self._double.bind("ITensor")(name, shape, self._trt.DataType.FLOAT)

    def _layer(self, cls: str, kind: str) -> Any:
        layer = self._double.bind(cls)(f"(Unnamed Layer* {len(self._recorded)}) [{kind}]", kind, False)
        return layer

    def add_input(self, name: str, dtype: Any, shape: Any) -> Any:
        tensor = self._double.bind("ITensor")(name, tuple(int(d) for d in shape), dtype)
        self._api_inputs.append(tensor)
        self._inputs.append(tensor)  # type: ignore[attr-defined]
        return tensor

    def add_convolution_nd(self, input: Any, num_output_maps: int, kernel_shape: Any, kernel: Any, bias: Any) -> Any:
        kernel_shape = tuple(int(k) for k in kernel_shape)
        w = _array(kernel, "convolution kernel")
        channels = input.shape[1]
        expected = num_output_maps * channels * int(np.prod(kernel_shape))
        if w.size != expected:
            self._double.log("ERROR", f"Convolution kernel weights has count {w.size} but {expected} was expected")
            raise ValueError("add_convolution_nd: kernel weight count does not match")
        layer = self._layer("IConvolutionLayer", "Convolution")
        layer.padding_nd = (0,) * len(kernel_shape)
        layer.stride_nd = (1,) * len(kernel_shape)
        out = self._tensor("Convolution", (input.shape[0], num_output_maps, *input.shape[2:]))
        b = None if bias is None else _array(bias, "convolution bias")
        self._recorded.append(
            ("Conv", layer, [input], [out], {"w": w.reshape(num_output_maps, channels, *kernel_shape), "b": b})
        )
        layer._outputs = [out]
        return layer

    def add_activation(self, input: Any, type: Any) -> Any:
        if type.name not in _ACTIVATIONS:
            raise ValueError(f"the double models activations {', '.join(_ACTIVATIONS)}, not {type.name}")
        layer = self._layer("IActivationLayer", "Activation")
        out = self._tensor("Activation", input.shape)
        self._recorded.append((_ACTIVATIONS[type.name], layer, [input], [out], {}))
        layer._outputs = [out]
        return layer

    def add_fully_connected(self, input: Any, num_outputs: int, kernel: Any, bias: Any = None) -> Any:
        w = _array(kernel, "fully connected kernel")
        layer = self._layer("IFullyConnectedLayer", "FullyConnected")
        out = self._tensor("FullyConnected", (input.shape[0], num_outputs, 1, 1))
        b = None if bias is None else _array(bias, "fully connected bias")
        self._recorded.append(("FullyConnected", layer, [input], [out], {"w": w.reshape(num_outputs, -1), "b": b}))
        layer._outputs = [out]
        return layer

    def mark_output(self, tensor: Any) -> None:
        self._api_outputs.append(tensor)

    @property
    def num_outputs(self) -> int:
        if self._api_outputs or self._model is None:
            return len(self._api_outputs)
        return len(self._model.graph.output)

    # -- build time -------------------------------------------------------------------

    def _finalize(self) -> Optional[str]:
        """Turn recorded layers into the ONNX model the double runs; an error text or None."""
        if self._model is not None or not self._recorded:
            return None
        if not self._api_outputs:
            return "Network must have at least one output"
        from onnx import TensorProto, helper, numpy_helper, shape_inference

        nodes, inits = [], []

        def const(name: str, value: np.ndarray) -> str:
            inits.append(numpy_helper.from_array(value, name))
            return name

        def weighted(i: int, src: str, attrs: dict) -> List[str]:
            names = [src, const(f"w{i}", attrs["w"])]
            return names + ([const(f"b{i}", attrs["b"])] if attrs["b"] is not None else [])

        for i, (op, layer, inputs, outputs, attrs) in enumerate(self._recorded):
            src, dst = inputs[0].name, outputs[0].name
            if op == "Conv":
                names = [src, const(f"w{i}", attrs["w"])] + (
                    [const(f"b{i}", attrs["b"])] if attrs["b"] is not None else []
                )
                pads = list(layer.padding_nd) * 2
                nodes.append(
                    helper.make_node("Conv", names, [dst], name=layer.name, pads=pads, strides=list(layer.stride_nd))
                )
            elif op == "FullyConnected":
                k = attrs["w"].shape[0]
                flat, gemm = f"flat{i}", f"gemm{i}"
                nodes.append(helper.make_node("Flatten", [src], [flat], name=f"{layer.name}_flatten", axis=1))
                names = [flat, const(f"w{i}", attrs["w"])] + (
                    [const(f"b{i}", attrs["b"])] if attrs["b"] is not None else []
                )
                nodes.append(helper.make_node("Gemm", names, [gemm], name=layer.name, transB=1))
                shape = const(f"s{i}", np.array([-1, k, 1, 1], np.int64))
                nodes.append(helper.make_node("Reshape", [gemm, shape], [dst], name=f"{layer.name}_reshape"))
            else:
                nodes.append(helper.make_node(op, [src], [dst], name=layer.name))
        graph = helper.make_graph(
            nodes,
            "network",
            [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.shape)) for t in self._api_inputs],
            # Output shapes are left to shape inference: padding and strides may be set after a layer is added.
            [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, None) for t in self._api_outputs],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        self._inputs = []
        self._load(shape_inference.infer_shapes(model, strict_mode=True))  # type: ignore[attr-defined]
        return None


class INetworkDefinition(NetworkApi, build.INetworkDefinition):
    def __init__(self, trt: Any, flags: int) -> None:
        build.INetworkDefinition.__init__(self, trt, flags)
        self._api_init()
