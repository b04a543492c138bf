"""Models and TensorRT test doubles for the backend tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List

import numpy as np
import pytest


def write_model(path: Path, ops: List[str], dynamic_batch: bool = True) -> Path:
    """A small seeded ONNX model: a 3x3 convolution, then the listed one-input ops."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b"),
    ]
    names = ["t0", *[f"t{i + 1}" for i in range(len(ops))]]
    names[-1] = "y"
    nodes = [helper.make_node("Conv", ["x", "w", "b"], [names[0]], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    for i, op in enumerate(ops):
        nodes.append(helper.make_node(op, [names[i]], [names[i + 1]], name=f"{op.lower()}{i}"))
    batch: Any = "N" if dynamic_batch else 2
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, 8, 8])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def demo_model(demo_assets: Path) -> str:
    return str(demo_assets / "demo-cnn.onnx")


@pytest.fixture()
def conv_model(tmp_path: Path) -> str:
    """conv, relu, sigmoid: every layer one the DLA can run."""
    return str(write_model(tmp_path / "conv.onnx", ["Relu", "Sigmoid"]))


@pytest.fixture()
def make_trt() -> Callable[..., Any]:
    from tests.trt_double import make_tensorrt

    return make_tensorrt
