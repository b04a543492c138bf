"""Small ONNX networks with known DLA outcomes, built with the onnx helper (no downloads).

Weights are zeros: placement reads structure and shapes, never values (except the few
constants it must read, such as Resize scales and Clip bounds, which are set for real).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Net:
    """Accumulates nodes and initializers; each ``op`` call returns its output name."""

    def __init__(self, name: str, shape: Sequence[Any] = (1, 3, 224, 224), opset: int = 17) -> None:
        self.name = name
        self.opset = opset
        self.input = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self.count = 0

    def const(self, values: Any, dtype: Any = np.float32) -> str:
        self.count += 1
        name = f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def op(self, op: str, inputs: Sequence[str], name: Optional[str] = None, **attrs: Any) -> str:
        self.count += 1
        node_name = name or f"{op}_{self.count}"
        out = f"{node_name}_out"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=node_name, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, group: int = 1, name: str = "") -> str:
        w = self.const(np.zeros((cout, cin // group, k, k)))
        pad = k // 2
        return self.op(
            "Conv", [x, w], name or None, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group
        )

    def bn(self, x: str, c: int) -> str:
        ones, zeros = self.const(np.ones(c)), self.const(np.zeros(c))
        return self.op("BatchNormalization", [x, ones, zeros, zeros, ones])

    def relu6(self, x: str) -> str:
        return self.op("Clip", [x, self.const(0.0), self.const(6.0)])

    def head(self, x: str, c: int, hw: int, classes: int = 10) -> str:
        """The DLA-friendly classifier head: AveragePool over the whole (<= 8x8) map, Flatten, Gemm."""
        pooled = self.op("AveragePool", [x], "head_pool", kernel_shape=[hw, hw])
        flat = self.op("Flatten", [pooled], "head_flatten", axis=1)
        return self.op(
            "Gemm", [flat, self.const(np.zeros((classes, c))), self.const(np.zeros(classes))], "fc", transB=1
        )

    def model(self, output: str) -> onnx.ModelProto:
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
        graph = helper.make_graph(self.nodes, self.name, [self.input], [out], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])


def resnet_style(head: str = "avgpool") -> onnx.ModelProto:
    """Stem, max-pool, four residual stages (with a projection shortcut), classifier."""
    net = Net("resnet_style")
    x = net.op("Relu", [net.bn(net.conv("input", 3, 16, k=7, stride=2, name="stem"), 16)])
    x = net.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c, hw = 16, 56
    for stage, cout in enumerate((16, 32, 64, 128)):
        stride = 1 if stage == 0 else 2
        y = net.op("Relu", [net.bn(net.conv(x, c, cout, stride=stride), cout)])
        y = net.bn(net.conv(y, cout, cout), cout)
        short = x if stride == 1 and c == cout else net.bn(net.conv(x, c, cout, k=1, stride=stride), cout)
        x = net.op("Relu", [net.op("Add", [y, short])])
        c, hw = cout, hw // stride
    if head == "global":
        pooled = net.op("GlobalAveragePool", [x], "gap")
        flat = net.op("Flatten", [pooled], axis=1)
        return net.model(net.op("Gemm", [flat, net.const(np.zeros((10, c)))], "fc", transB=1))
    return net.model(net.head(x, c, hw))


def mobilenetv2_style() -> onnx.ModelProto:
    """Inverted residual blocks: 1x1 expand, depthwise 3x3, 1x1 project, ReLU6, skip adds."""
    net = Net("mobilenetv2_style")
    x = net.relu6(net.bn(net.conv("input", 3, 16, stride=2), 16))
    c, hw = 16, 112
    for cout, stride in ((16, 1), (24, 2), (24, 1), (32, 2), (64, 2), (64, 1), (96, 2)):
        hidden = c * 4
        y = net.relu6(net.bn(net.conv(x, c, hidden, k=1), hidden))
        y = net.relu6(net.bn(net.conv(y, hidden, hidden, stride=stride, group=hidden), hidden))
        y = net.bn(net.conv(y, hidden, cout, k=1), cout)
        x = net.op("Add", [x, y]) if stride == 1 and c == cout else y
        c, hw = cout, hw // stride
    return net.model(net.head(x, c, hw))


def norm_net(kind: str, blocks: int = 6, groups: int = 4) -> onnx.ModelProto:
    """Conv blocks normalised by BatchNorm (``batch``) or by GroupNorm the way older exporters
    write it (``group``: Reshape, InstanceNormalization, Reshape back, per-channel Mul + Add)."""
    net = Net(f"{kind}norm_net", shape=(1, 3, 64, 64))
    x, c = net.conv("input", 3, 32, name="stem"), 32
    for i in range(blocks):
        x = net.conv(x, c, c, name=f"conv{i}")
        if kind == "batch":
            x = net.bn(x, c)
        else:
            g = net.op("Reshape", [x, net.const([1, groups, -1], np.int64)], f"gn{i}_reshape")
            g = net.op("InstanceNormalization", [g, net.const(np.ones(groups)), net.const(np.zeros(groups))], f"gn{i}")
            g = net.op("Reshape", [g, net.const([1, c, 64, 64], np.int64)], f"gn{i}_back")
            x = net.op("Add", [net.op("Mul", [g, net.const(np.ones((1, c, 1, 1)))]), net.const(np.zeros((1, c, 1, 1)))])
        x = net.op("Relu", [x])
    return net.model(x)


def single(op: str, shape: Sequence[Any] = (1, 16, 32, 32), opset: int = 17, **kw: Any) -> onnx.ModelProto:
    """A conv followed by one node under test (named ``probe``)."""
    net = Net(f"probe_{op}", shape=shape, opset=opset)
    x = net.conv("input", int(shape[1]), 16, name="conv_in")
    inputs = [x] + [net.const(v, dt) for v, dt in kw.pop("consts", [])]
    return net.model(net.op(op, inputs, "probe", **kw))


def oversized_kernel() -> onnx.ModelProto:
    net = Net("oversized", shape=(1, 3, 128, 128))
    x = net.conv("input", 3, 16, name="Conv_1")
    w = net.const(np.zeros((16, 16, 37, 37)))
    x = net.op("Conv", [x, w], "Conv_57", kernel_shape=[37, 37], pads=[18] * 4)
    return net.model(net.op("Relu", [x]))


def detector_tail() -> onnx.ModelProto:
    """Backbone conv, then an Einsum and NonMaxSuppression on the GPU."""
    net = Net("detector", shape=(1, 3, 64, 64))
    x = net.op("Relu", [net.conv("input", 3, 8, name="backbone")])
    e = net.op("Einsum", [x, x], "mix", equation="nchw,nchw->nch")
    boxes = net.op("Reshape", [e, net.const([1, 128, 4], np.int64)], "to_boxes")
    scores = net.op("Reshape", [e, net.const([1, 1, 128], np.int64)], "to_scores")
    return net.model(net.op("NonMaxSuppression", [boxes, scores, net.const([10], np.int64)], "nms"))


def dynamic_hw() -> onnx.ModelProto:
    net = Net("dynamic", shape=("N", 3, "H", "W"))
    return net.model(net.op("Relu", [net.conv("input", 3, 8, name="conv_dyn")], "relu_dyn"))


def dynamic_batch() -> onnx.ModelProto:
    net = Net("dynamic_batch", shape=("N", 3, 32, 32))
    return net.model(net.op("Relu", [net.conv("input", 3, 8, name="conv")], "relu"))


def dla_tutorial_model_bn() -> onnx.ModelProto:
    """The ``ModelBN`` classifier of NVIDIA-AI-IOT/jetson_dla_tutorial (models.py) as
    ``torch.onnx.export`` writes it in its export.py: four stride-2 3x3 convolutions (BatchNorm
    folded in) with ReLU, AdaptiveAvgPool2d(1) as GlobalAveragePool, ``x.view(x.shape[0], -1)``
    as Shape/Gather/Unsqueeze/Concat/Reshape, and a Linear(512, 10) as Gemm; input
    [batch_size, 3, 32, 32] and output [batch_size, 10] with the batch symbolic. Node names
    follow the tutorial's published Orin log (Conv_0 ... Relu_7, GlobalAveragePool_8, Gemm_15)."""
    net = Net("ModelBN", shape=("batch_size", 3, 32, 32), opset=11)
    x, cin, index = "input", 3, 0
    for cout in (64, 128, 256, 512):
        bias = net.const(np.zeros(cout))
        w = net.const(np.zeros((cout, cin, 3, 3)))
        x = net.op("Conv", [x, w, bias], f"Conv_{index}", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        x = net.op("Relu", [x], f"Relu_{index + 1}")
        cin, index = cout, index + 2
    pooled = net.op("GlobalAveragePool", [x], "GlobalAveragePool_8")
    shape = net.op("Shape", [pooled], "Shape_9")
    zero = net.op("Constant", [], "Constant_10", value=numpy_helper.from_array(np.array(0, np.int64)))
    batch = net.op("Gather", [shape, zero], "Gather_11", axis=0)
    batch = net.op("Unsqueeze", [batch], "Unsqueeze_12", axes=[0])
    target = net.op("Concat", [batch, net.const([-1], np.int64)], "Concat_13", axis=0)
    flat = net.op("Reshape", [pooled, target], "Reshape_14")
    out = net.op("Gemm", [flat, net.const(np.zeros((10, 512))), net.const(np.zeros(10))], "Gemm_15", transB=1)
    model = net.model(out)
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch_size", 10]))
    return model
