"""An ONNX model reduced to what placement needs: nodes in order, tensor shapes, constants.

``onnx`` is imported only here and only when a model is read, so the rest of edged works
without it. Shapes come from ONNX shape inference after the leading (batch) dimension of
every graph input is fixed to the configured batch, as the TensorRT build does with a
single min = opt = max profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from edged.errors import PlacementError
from edged.placement.shape_fold import fold_reshape_targets

__all__ = ["Node", "Graph", "load_graph", "graph_from_model"]

Dim = Union[int, str]  # str: a symbolic (dynamic) dimension
Shape = Tuple[Dim, ...]


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    nodes: List[Node]
    shapes: Dict[str, Optional[Shape]]
    constants: Dict[str, np.ndarray]  # initializers and Constant outputs, by tensor name
    folded: Set[str]  # nodes TensorRT evaluates at build time (constant inputs only)
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    opset: int
    dynamic_inputs: Dict[str, Shape] = field(default_factory=dict)  # as declared, before fixing
    batch: int = 1

    def shape(self, tensor: str) -> Optional[Shape]:
        return self.shapes.get(tensor)

    def is_const(self, tensor: str) -> bool:
        return tensor in self.constants

    def const(self, tensor: str) -> Optional[np.ndarray]:
        return self.constants.get(tensor)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise PlacementError(
            "reading ONNX models needs the onnx package: install python3-onnx or pip install onnx"
        ) from None
    return onnx


def load_graph(path: str, batch: int = 1) -> Graph:
    onnx = _onnx()
    try:
        model = onnx.load(path)
    except FileNotFoundError:
        raise PlacementError(f"{path}: model file not found") from None
    except Exception as exc:  # onnx raises DecodeError and others for non-ONNX files
        raise PlacementError(f"{path}: not a readable ONNX model ({exc})") from None
    return graph_from_model(model, batch)


def _dims(type_proto: Any) -> Optional[Shape]:
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims: List[Dim] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or "?")
    return tuple(dims)


def graph_from_model(model: Any, batch: int = 1) -> Graph:
    """Build a :class:`Graph` from an in-memory ``onnx.ModelProto`` (copied, not changed)."""
    onnx = _onnx()
    from onnx import numpy_helper, shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    init_names = {init.name for init in graph.initializer}
    declared: Dict[str, Shape] = {}
    for value in graph.input:
        if value.name in init_names:
            continue
        dims = _dims(value.type)
        if dims and any(isinstance(d, str) for d in dims):
            declared[value.name] = dims
        shape = value.type.tensor_type.shape
        if len(shape.dim) and not shape.dim[0].HasField("dim_value"):
            shape.dim[0].Clear()
            shape.dim[0].dim_value = batch
    # Declared output and intermediate shapes still carry the exporter's symbolic batch
    # ("batch_size"), and shape inference keeps a declared symbol over the number it infers.
    # Drop them so every shape is inferred from the fixed inputs; a tensor inference cannot
    # type keeps its declaration (added back below).
    declared_elsewhere = {v.name: _dims(v.type) for v in list(graph.output) + list(graph.value_info)}
    for value in graph.output:
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")
    del graph.value_info[:]
    batch_symbols = {dims[0] for dims in declared.values() if isinstance(dims[0], str)}
    try:
        fold_reshape_targets(model)
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        raise PlacementError(f"ONNX shape inference failed: {exc}") from None
    g = inferred.graph
    shapes: Dict[str, Optional[Shape]] = {}
    for value in list(g.input) + list(g.value_info) + list(g.output):
        shapes[value.name] = _dims(value.type)
    for name, dims in declared_elsewhere.items():
        if shapes.get(name) is None and dims is not None:
            # The exporter's batch symbol is the build's batch, not a dynamic dimension.
            shapes[name] = tuple(batch if d in batch_symbols else d for d in dims)
    constants: Dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in g.initializer}
    for init in g.initializer:
        shapes.setdefault(init.name, tuple(int(d) for d in init.dims))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    nodes: List[Node] = []
    for index, proto in enumerate(g.node):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}
        name = proto.name or f"{proto.op_type}_{index}"
        nodes.append(Node(name, proto.op_type, tuple(proto.input), tuple(proto.output), attrs))
        if proto.op_type == "Constant" and "value" in attrs:
            constants[proto.output[0]] = numpy_helper.to_array(attrs["value"])
    inputs = tuple(v.name for v in g.input if v.name not in init_names)
    return Graph(
        nodes=nodes,
        shapes=shapes,
        constants=constants,
        folded=_folded(nodes, constants, shapes, inputs),
        inputs=inputs,
        outputs=tuple(v.name for v in g.output),
        opset=opset,
        dynamic_inputs=declared,
        batch=batch,
    )


def _static(shape: Optional[Shape]) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def _folded(
    nodes: Sequence[Node], constants: Mapping[str, Any], shapes: Mapping[str, Optional[Shape]], inputs: Sequence[str]
) -> Set[str]:
    """Nodes whose outputs TensorRT computes at build time: constants, and arithmetic on
    constants or on static shapes (Shape of a static tensor is a constant)."""
    known = set(constants)
    folded: Set[str] = set()
    for node in nodes:
        real = [t for t in node.inputs if t]
        if node.op == "Shape" and real and _static(shapes.get(real[0])):
            const = True
        else:
            const = all(t in known for t in real) and node.op not in ("RandomNormal", "RandomUniform")
        if const:
            folded.add(node.name)
            known.update(node.outputs)
    return folded
