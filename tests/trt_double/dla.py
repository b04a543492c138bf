"""Which ONNX nodes the TensorRT test double lets onto the DLA, per TensorRT generation.

The double's own table, written from the fact sheet ``shared/reference/dla-rules.md`` (its
section and source keys are cited per row) and deliberately independent of edged's rules in
edged/placement: tests compare edged's predictions with what this double builds, so sharing
the rules would prove nothing. It decides per node from the op, its constant inputs and
where its output goes; parameter limits (kernel sizes, strides) are not modelled.

Row by row (dla-rules.md §4 "How ONNX ops become TensorRT layers"):
- Conv, BatchNormalization (Scale), Relu/Sigmoid/Tanh/LeakyRelu/Clip, MaxPool/AveragePool,
  Add/Sub/Mul/Max/Min: DLA on every generation that has one (OX85; H85/H103).
- Div, Pow: 8.5 and 8.6 reject them ("DLA cores do not support DIV ElementWise operation",
  LOG-pastebin; JetPack 6.0's 8.6.2 still rejected Div, LOG-held-out); 10.x accepts (DG-L).
- GlobalAveragePool: imported as Reduce-AVG, which no generation runs on the DLA (§3.15;
  NVIDIA-AI-IOT/jetson_dla_tutorial README: "[GpuLayer] REDUCE: GlobalAveragePool_8").
- Gemm/MatMul with a constant weight: DLA as a 1x1 convolution; with two run-time inputs GPU
  (OX85 L1591; SW-OPS).
- Flatten and Reshape feeding only a constant-weight Gemm: folded into it, so DLA (the
  tutorial's INT8 ModelBN log lists ``{ForeignNode[Conv_0...Gemm_15]}`` with the Reshape
  between them); any other Flatten/Reshape/Transpose to or from 2-D/3-D is a GPU shuffle
  (§3.14; SW-OPS "Flatten RFE").
- Concat: DLA on the channel axis only (§3.9).
- Softmax, Cast, Identity, Quantize/DequantizeLinear, Transpose: GPU (Softmax runs on
  Orin's DLA under size limits the double does not model; Q/DQ are not consumed by the DLA).
"""

from __future__ import annotations

from typing import Any, Dict, List, Set

_ALWAYS = {"Conv", "BatchNormalization", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "MaxPool", "AveragePool",
           "Add", "Sub", "Mul", "Max", "Min"}  # fmt: skip
_FROM_10 = {"Div", "Pow"}
_FOLDS_INTO_GEMM = {"Flatten", "Reshape"}


def dla_capable(model: Any, major: int) -> Dict[str, bool]:
    """Node name (or ``op_index`` when unnamed) -> whether the DLA can run it."""
    graph = model.graph
    constants: Set[str] = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    consumers: Dict[str, List[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    answer: Dict[str, bool] = {}
    for index, node in enumerate(graph.node):
        op = node.op_type
        if op in _ALWAYS or (op in _FROM_10 and major >= 10):
            ok = True
        elif op in ("Gemm", "MatMul"):
            ok = len(node.input) > 1 and node.input[1] in constants
        elif op in _FOLDS_INTO_GEMM:
            users = consumers.get(node.output[0], [])
            ok = len(users) == 1 and users[0].op_type in ("Gemm", "MatMul") and users[0].input[1] in constants
        elif op == "Concat":
            ok = next((a.i for a in node.attribute if a.name == "axis"), 1) == 1
        else:
            ok = False
        answer[node.name or f"{op}_{index}"] = ok
    return answer


def shape_only(model: Any) -> Set[str]:
    """Nodes that compute only from constants and tensor shapes (Shape, Gather on a shape,
    Concat of dims...). TensorRT evaluates them as shape calculations, not as GPU or DLA
    layers: the tutorial's log lists neither its Shape nor its Gather among the placed layers."""
    known: Set[str] = {init.name for init in model.graph.initializer}
    found: Set[str] = set()
    for index, node in enumerate(model.graph.node):
        inputs = [name for name in node.input if name]
        if node.op_type == "Shape" or all(name in known for name in inputs):
            found.add(node.name or f"{node.op_type}_{index}")
            known.update(node.output)
    return found
