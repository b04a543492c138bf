#!/usr/bin/env python3
"""Write a MobileNetV2- or ResNet-50-shaped ONNX model with seeded random weights, for benchmarks.

MobileNetV2 (the default): same topology and cost as MobileNetV2 1.0 at 224x224 (inverted
residual blocks with depthwise 3x3 convolutions, ReLU6, about 300 MFLOPs per image, 14 MB of
weights): its activations outweigh its weights at any batch above one.
ResNet-50 (``--arch resnet50``): bottleneck blocks of 3, 4, 6 and 3, batch norm folded into
the convolutions (clipped at 6 like the MobileNet's, ReLU after each sum), about 4 GFLOPs
per image and 100 MB of weights: its weights dominate.
Neither is trained: their outputs mean nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

# (expansion, output channels, repeats, first stride), as in the MobileNetV2 paper's table 2.
_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: List[Any] = []
        self.inits: List[Any] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int, groups: int = 1, relu6: bool = True) -> str:
        from onnx import helper, numpy_helper

        w_name, b_name, out = self.name("w"), self.name("b"), self.name("conv")
        fan_in = cin // groups * k * k
        w = (self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        self.inits += [numpy_helper.from_array(w, w_name), numpy_helper.from_array(np.zeros(cout, np.float32), b_name)]
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv", [x, w_name, b_name], [out], name=out, kernel_shape=[k, k],
                strides=[stride, stride], pads=[pad] * 4, group=groups,
            )
        )  # fmt: skip
        if not relu6:
            return out
        clipped = self.name("relu6_")
        lo, hi = self.name("lo"), self.name("hi")
        self.inits += [
            numpy_helper.from_array(np.array(0, np.float32), lo),
            numpy_helper.from_array(np.array(6, np.float32), hi),
        ]
        self.nodes.append(helper.make_node("Clip", [out, lo, hi], [clipped], name=clipped))
        return clipped

    def add(self, a: str, b: str) -> str:
        from onnx import helper

        out = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out], name=out))
        return out


def _mobilenetv2(g: _Graph) -> Tuple[str, int]:
    x = g.conv("input", 3, 32, 3, 2)
    cin = 32
    for expansion, cout, repeats, first_stride in _BLOCKS:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            hidden = cin * expansion
            y = g.conv(x, cin, hidden, 1, 1) if expansion != 1 else x
            y = g.conv(y, hidden, hidden, 3, stride, groups=hidden)
            y = g.conv(y, hidden, cout, 1, 1, relu6=False)
            x = g.add(x, y) if stride == 1 and cin == cout else y
            cin = cout
    return g.conv(x, cin, 1280, 1, 1), 1280


def _resnet50(g: _Graph) -> Tuple[str, int]:
    from onnx import helper

    x = g.conv("input", 3, 64, 7, 2)
    pooled = g.name("maxpool")
    g.nodes.append(
        helper.make_node("MaxPool", [x], [pooled], name=pooled, kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    )
    x, cin = pooled, 64
    for width, repeats, first_stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            y = g.conv(x, cin, width, 1, 1)
            y = g.conv(y, width, width, 3, stride)
            y = g.conv(y, width, width * 4, 1, 1, relu6=False)
            shortcut = g.conv(x, cin, width * 4, 1, stride, relu6=False) if i == 0 else x
            summed, x = g.add(shortcut, y), g.name("relu")
            g.nodes.append(helper.make_node("Relu", [summed], [x], name=x))
            cin = width * 4
    return x, cin


def build_model(
    input_hw: Tuple[int, int] = (224, 224), classes: int = 1000, seed: int = 11, arch: str = "mobilenetv2"
) -> Any:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = _Graph(seed)
    x, features = _resnet50(g) if arch == "resnet50" else _mobilenetv2(g)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1))
    fc_w = (g.rng.standard_normal((classes, features)) / np.sqrt(features)).astype(np.float32)
    g.inits += [numpy_helper.from_array(fc_w, "fc.w"), numpy_helper.from_array(np.zeros(classes, np.float32), "fc.b")]
    g.nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1))
    h, w = input_hw
    graph = helper.make_graph(
        g.nodes,
        f"{arch}-shaped",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, producer_name="edged-bench", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    model.doc_string = f"{arch}-shaped network with seeded random weights; for benchmarks only."
    onnx.checker.check_model(model)
    return model


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="var/bench/mobilenetv2-shaped.onnx", help="output file (default: %(default)s)")
    parser.add_argument("--arch", choices=("mobilenetv2", "resnet50"), default="mobilenetv2")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(build_model(arch=args.arch).SerializeToString())
    tmp.replace(out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
