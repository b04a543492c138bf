"""Evaluate the small shape arithmetic exporters put in front of a Reshape, as TensorRT does.

``x.view(x.shape[0], -1)`` exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape. Once
the batch is fixed for the build, TensorRT computes that target shape at build time; ONNX
shape inference (even with data propagation) loses it, leaving the Reshape and everything
after it without a shape. This folds such chains with numpy and hands the Reshape a
constant target, so inference sees what TensorRT sees.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np

__all__ = ["fold_reshape_targets"]


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _unsqueeze(node: Any, args: List[np.ndarray]) -> np.ndarray:
    axes = _attr(node, "axes") if len(args) < 2 else [int(a) for a in args[1].reshape(-1)]
    out = args[0]
    for axis in sorted(int(a) % (out.ndim + len(axes)) for a in axes):
        out = np.expand_dims(out, axis)
    return out


def _squeeze(node: Any, args: List[np.ndarray]) -> np.ndarray:
    axes = _attr(node, "axes") if len(args) < 2 else [int(a) for a in args[1].reshape(-1)]
    out: np.ndarray = np.squeeze(args[0], axis=tuple(int(a) for a in axes)) if axes else np.squeeze(args[0])
    return out


_OPS: Dict[str, Callable[[Any, List[np.ndarray]], np.ndarray]] = {
    "Gather": lambda n, a: np.take(a[0], a[1].astype(np.int64), axis=int(_attr(n, "axis", 0))),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda n, a: np.concatenate([x.reshape(-1) if x.ndim == 0 else x for x in a], axis=int(_attr(n, "axis"))),
    "Cast": lambda n, a: a[0].astype(np.int64),
    "Add": lambda n, a: a[0] + a[1],
    "Sub": lambda n, a: a[0] - a[1],
    "Mul": lambda n, a: a[0] * a[1],
    "Div": lambda n, a: a[0] // a[1],
    "Identity": lambda n, a: a[0],
}


def _static_shapes(model: Any) -> Dict[str, List[int]]:
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    shapes: Dict[str, List[int]] = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info):
        t = value.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[value.name] = [int(d.dim_value) for d in t.shape.dim]
    return shapes


def fold_reshape_targets(model: Any) -> Any:
    """``model`` (changed in place and returned) with every computable Reshape target shape
    replaced by an initializer. Anything it cannot evaluate is left as it was."""
    from onnx import numpy_helper

    graph = model.graph
    values: Dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    shapes = _static_shapes(model)
    for node in graph.node:
        result: Optional[np.ndarray] = None
        args = [values.get(name) for name in node.input if name]
        if node.op_type == "Constant" and _attr(node, "value") is not None:
            result = numpy_helper.to_array(_attr(node, "value"))
        elif node.op_type == "Shape" and node.input[0] in shapes:
            result = np.array(shapes[node.input[0]], np.int64)
        elif node.op_type in _OPS and args and all(a is not None for a in args):
            try:
                result = np.asarray(_OPS[node.op_type](node, [a for a in args if a is not None]))
            except (ValueError, IndexError, TypeError):
                result = None
        if result is not None and node.output:
            values[node.output[0]] = result
    taken = {i.name for i in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] in taken:
            continue
        target = values.get(node.input[1])
        if target is None:
            continue
        name = f"{node.input[1]}__folded"
        graph.initializer.append(numpy_helper.from_array(target.astype(np.int64).reshape(-1), name))
        taken.add(name)
        node.input[1] = name
    return model
