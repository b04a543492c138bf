"""Per-node DLA checks: does this ONNX node's TensorRT form run on the DLA, and which rule
decides? Each check returns the first rule that fails, with the numbers that broke it
(``kernel 37 > 32``), or the rule that admits the node."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from edged.placement.graph import Graph, Node, Shape
from edged.placement.layers import NO_DLA_OPS, UNARY_OPS
from edged.placement.rules import Rule, RuleSet

__all__ = ["Check", "CheckContext", "check_node"]


@dataclass(frozen=True)
class Check:
    dla: bool
    rule: Optional[Rule]
    detail: str


@dataclass(frozen=True)
class CheckContext:
    graph: Graph
    rules: RuleSet
    precision: str  # fp16 | int8

    def fail(self, rule_id: str, detail: str = "") -> Check:
        rule = self.rules[rule_id]
        return Check(False, rule, detail or rule.text)

    def ok(self, rule_id: Optional[str] = None, detail: str = "supported") -> Check:
        return Check(True, self.rules[rule_id] if rule_id else None, detail)

    def in_shape(self, node: Node, index: int = 0) -> Optional[Shape]:
        if index >= len(node.inputs) or not node.inputs[index]:
            return None
        return self.graph.shape(node.inputs[index])

    def out_shape(self, node: Node, index: int = 0) -> Optional[Shape]:
        return self.graph.shape(node.outputs[index]) if index < len(node.outputs) else None


def _pairs(values: Sequence[int], n: int = 2) -> List[int]:
    return list(values)[:n] if values else []


def _range(ctx: CheckContext, rule_id: str, what: str, values: Sequence[int]) -> Optional[Check]:
    params = ctx.rules[rule_id].params
    for value in values:
        if value < params["lo"]:
            return ctx.fail(rule_id, f"{what} {value} < {params['lo']}")
        if value > params["hi"]:
            return ctx.fail(rule_id, f"{what} {value} > {params['hi']}")
    return None


def _conv(ctx: CheckContext, node: Node) -> Check:
    weight = ctx.in_shape(node, 1)
    if weight is None or len(weight) != 4:
        return ctx.fail("conv.rank", f"{len(weight) - 2 if weight else '?'}-D convolution")
    kernel = _pairs(node.attrs.get("kernel_shape") or [d for d in weight[2:] if isinstance(d, int)])
    strides = _pairs(node.attrs.get("strides", [1, 1]))
    dilations = _pairs(node.attrs.get("dilations", [1, 1]))
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    problem = (
        _range(ctx, "conv.kernel", "kernel", kernel)
        or _range(ctx, "conv.stride", "stride", strides)
        or _range(ctx, "conv.dilation", "dilation", dilations)
        or _range(ctx, "conv.padding", "padding", pads)
    )
    if problem:
        return problem
    for axis, pad in enumerate(pads):
        if pad >= kernel[axis % 2]:
            return ctx.fail("conv.padding", f"padding {pad} >= kernel {kernel[axis % 2]}")
    maps = weight[0]
    if isinstance(maps, int) and maps > ctx.rules["conv.maps"].params["hi"]:
        return ctx.fail("conv.maps", f"{maps} output channels > {ctx.rules['conv.maps'].params['hi']}")
    groups = int(node.attrs.get("group", 1))
    if groups > ctx.rules["conv.groups"].params["hi"]:
        return ctx.fail("conv.groups", f"groups {groups} > {ctx.rules['conv.groups'].params['hi']}")
    return _cbuf(ctx, node, weight, kernel, dilations) or ctx.ok()


def _cbuf(ctx: CheckContext, node: Node, weight: Shape, kernel: List[int], dilations: List[int]) -> Optional[Check]:
    """The convolution-buffer fit check (fact sheet §3.1; DG84 formula, M confidence)."""
    shape = ctx.in_shape(node, 0)
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in (weight[1], shape[3])):
        return None
    per_group_cin, width = int(weight[1]), int(shape[3])
    b = 1 if ctx.precision == "int8" else 2
    kh, kw = kernel[0], kernel[1]
    weight_bytes = per_group_cin * kh * kw * b
    wt_banks = math.ceil((math.ceil(weight_bytes / 128) * 128) / 32768)
    data_banks = math.ceil(
        math.ceil(math.ceil(per_group_cin * b / 32) * width / 4) * ((kh - 1) * dilations[0] + 1) / 256
    )
    limit = ctx.rules["conv.cbuf"].params["banks"]
    if wt_banks + data_banks > limit:
        return ctx.fail("conv.cbuf", f"needs {wt_banks} weight + {data_banks} data banks > {limit}")
    return None


def _deconv(ctx: CheckContext, node: Node) -> Check:
    weight = ctx.in_shape(node, 1)
    if weight is None or len(weight) != 4:
        return ctx.fail("conv.rank", "transposed convolution is not 2-D")
    kernel = _pairs(node.attrs.get("kernel_shape") or [d for d in weight[2:] if isinstance(d, int)])
    strides = _pairs(node.attrs.get("strides", [1, 1]))
    params = ctx.rules["deconv.kernel"].params
    for what, values in (("kernel", kernel), ("stride", strides)):
        strip = sorted(values) in ([1, s] for s in params["strips"])
        if not strip and any(v < 1 or v > params["hi"] for v in values):
            return ctx.fail("deconv.kernel", f"{what} {'x'.join(map(str, values))} outside 1-{params['hi']}")
        if values[0] == values[1] and 23 <= values[0] <= 32:
            return ctx.fail("deconv.kernel", f"square {what} {values[0]} in the excluded 23-32 range")
    if any(node.attrs.get("pads", [])) or any(node.attrs.get("output_padding", [])):
        return ctx.fail("deconv.padding", f"pads {list(node.attrs.get('pads', []))}")
    auto_pad = str(_text(node.attrs.get("auto_pad", "NOTSET")))
    if auto_pad.startswith("SAME") and kernel != strides:
        # 'same' output size pads by kernel - stride: the Keras Conv2DTranspose export case.
        return ctx.fail("deconv.padding", f"auto_pad {auto_pad} with kernel {kernel} != stride {strides}")
    if int(node.attrs.get("group", 1)) != 1 or any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
        return ctx.fail("deconv.groups")
    return ctx.ok()


def _pool(ctx: CheckContext, node: Node) -> Check:
    if node.op == "LpPool":
        return ctx.fail("pool.type", "Lp pooling")
    problem = (
        _range(ctx, "pool.window", "window", _pairs(node.attrs.get("kernel_shape", [])))
        or _range(ctx, "pool.stride", "stride", _pairs(node.attrs.get("strides", [1, 1])))
        or _range(ctx, "pool.padding", "padding", list(node.attrs.get("pads", [])))
    )
    if problem:
        return problem
    xavier_avg = node.op == "AveragePool" and "pool.avg_xavier" in ctx.rules.rules
    if xavier_avg and any(node.attrs.get("pads", [])) and not node.attrs.get("count_include_pad", 0):
        return ctx.fail("pool.avg_xavier", "padded average pool excludes padding (count_include_pad=0)")
    return ctx.ok()


def _activation(ctx: CheckContext, node: Node) -> Check:
    allowed = ctx.rules["act.type"].params["allowed"]
    if node.op not in allowed:
        return ctx.fail("act.type", f"{node.op} is not a DLA activation")
    if node.op == "Clip":
        lo = _scalar(ctx, node, 1, "min")
        hi = _scalar(ctx, node, 2, "max")
        if lo is None or hi is None:
            return ctx.ok(detail="Clip with tensor bounds becomes ElementWise max/min")
        params = ctx.rules["act.clip"].params
        if lo != 0.0 or not params["lo"] <= hi <= params["hi"]:
            return ctx.fail("act.clip", f"Clip({lo:g}, {hi:g}) is not ReLU-like with max 1-127")
    return ctx.ok()


def _scalar(ctx: CheckContext, node: Node, index: int, attr: str) -> Optional[float]:
    if attr in node.attrs:
        return float(node.attrs[attr])
    if index < len(node.inputs) and node.inputs[index]:
        value = ctx.graph.const(node.inputs[index])
        return float(value.reshape(-1)[0]) if value is not None and value.size else None
    return 0.0 if attr == "min" else None


def _prelu(ctx: CheckContext, node: Node) -> Check:
    return ctx.ok() if ctx.graph.is_const(node.inputs[1]) else ctx.fail("prelu.slope")


def _eltwise(ctx: CheckContext, node: Node) -> Check:
    if node.op in ("Equal", "Greater", "Less"):
        return ctx.fail("eltwise.compare", f"{node.op} outside the INT8 + cast pattern")
    if node.op not in ctx.rules["eltwise.op"].params["allowed"]:
        return ctx.fail("eltwise.op", f"{node.op} is not a DLA element-wise op on TensorRT {ctx.rules.trt_version}")
    return _rank4(ctx, node) or ctx.ok()


def _rank4(ctx: CheckContext, node: Node) -> Optional[Check]:
    shape = ctx.out_shape(node)
    if shape is not None and len(shape) != 4:
        return ctx.fail("general.rank4", f"{len(shape)}-D tensor")
    return None


def _concat(ctx: CheckContext, node: Node) -> Check:
    if len([t for t in node.inputs if t]) < 2:
        return ctx.fail("concat.inputs")
    shape = ctx.out_shape(node)
    rank = len(shape) if shape is not None else 4
    axis = int(node.attrs.get("axis", 1))
    if rank != 4 or axis % rank != 1:
        return ctx.fail("concat.axis", f"axis {axis} of a {rank}-D tensor")
    return ctx.ok()


def _resize(ctx: CheckContext, node: Node) -> Check:
    # Upsample and opset-10 Resize take scales second; opset 11+ Resize third (after roi).
    scales_name = node.inputs[1] if node.op == "Upsample" or len(node.inputs) == 2 else ""
    if node.op == "Resize" and len(node.inputs) > 2:
        scales_name = node.inputs[2]
    if node.op == "Resize" and len(node.inputs) > 3 and node.inputs[3]:
        return ctx.fail("resize.static", "output size given by a 'sizes' input")
    scales = ctx.graph.const(scales_name) if scales_name else None
    if scales is None:
        return ctx.fail("resize.static", "scales are computed at run time")
    values = [float(v) for v in scales.reshape(-1)]
    mode = str(_text(node.attrs.get("mode", "nearest")))
    limit = 32 if mode == "nearest" else 4
    if len(values) != 4 or values[0] != 1 or values[1] != 1:
        return ctx.fail("resize.scales", f"scales {values}")
    if any(v != int(v) or not 1 <= v <= limit for v in values[2:]):
        return ctx.fail("resize.scales", f"H/W scales {values[2:]} not integers 1-{limit} ({mode})")
    coord = str(_text(node.attrs.get("coordinate_transformation_mode", "half_pixel")))
    legacy = node.op == "Upsample" or ctx.graph.opset < 11  # asymmetric coordinates, floor rounding
    if legacy:
        coord = "asymmetric"
    if mode == "nearest":
        nearest = "floor" if legacy else str(_text(node.attrs.get("nearest_mode", "round_prefer_floor")))
        allowed = {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"), ("half_pixel", "round_prefer_ceil")}
        if (coord, nearest) not in allowed:
            return ctx.fail("resize.mode", f"nearest with {coord}/{nearest}")
    elif mode == "linear":
        if coord not in ("half_pixel", "pytorch_half_pixel"):
            return ctx.fail("resize.mode", f"linear with {coord} coordinates")
    else:
        return ctx.fail("resize.mode", f"{mode} interpolation")
    return ctx.ok()


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def _softmax(ctx: CheckContext, node: Node) -> Check:
    if ctx.rules.dla_generation == 1:
        return ctx.fail("softmax.xavier")
    if ctx.graph.opset < 13:
        return ctx.fail("softmax.opset", f"opset {ctx.graph.opset} Softmax is flattened to 2-D")
    shape = ctx.out_shape(node)
    if shape is None or len(shape) != 4:
        return ctx.fail("softmax.axis", f"{len(shape) if shape else '?'}-D input")
    axis = int(node.attrs.get("axis", -1)) % 4
    if axis == 0:
        return ctx.fail("softmax.axis", "softmax over the batch axis")
    others = [d for i, d in enumerate(shape[1:], 1) if i != axis]
    size = shape[axis]
    limit = 8192 if all(d == 1 for d in others) else 1024
    if isinstance(size, int) and size > limit:
        return ctx.fail("softmax.size", f"axis size {size} > {limit}")
    return ctx.ok()


def _slice(ctx: CheckContext, node: Node) -> Check:
    shape = ctx.in_shape(node)
    if shape is None or len(shape) != 4:
        return ctx.fail("slice.form", f"{len(shape) if shape else '?'}-D input")
    if node.op == "Split":
        axis = int(node.attrs.get("axis", 0)) % 4
        return ctx.fail("slice.form", "split on the batch axis") if axis == 0 else ctx.ok()
    consts = [ctx.graph.const(t) if t else None for t in node.inputs[1:5]]
    if any(c is None for c, t in zip(consts, node.inputs[1:5]) if t):
        return ctx.fail("slice.form", "start/end/axes/steps computed at run time")
    starts = consts[0] if consts else None
    count = starts.size if starts is not None else 0
    axes_const = consts[2] if len(consts) > 2 else None
    axes = [int(a) % 4 for a in axes_const.reshape(-1)] if axes_const is not None else list(range(count))
    steps_const = consts[3] if len(consts) > 3 else None
    steps = [int(s) for s in steps_const.reshape(-1)] if steps_const is not None else []
    if any(s != 1 for s in steps):
        return ctx.fail("slice.form", f"steps {steps}")
    if 0 in axes:
        return ctx.fail("slice.form", "slices the batch axis")
    return ctx.ok()


def _shuffle(ctx: CheckContext, node: Node) -> Check:
    src, dst = ctx.in_shape(node), ctx.out_shape(node)
    flattens = node.op == "Flatten" or (
        node.op == "Reshape" and src is not None and dst is not None and len(dst) == 2 and dst[0] == src[0]
    )
    if flattens and _feeds_const_gemm(ctx, node):
        return ctx.ok("flatten.absorbed", "folds into the following constant-weight Gemm")
    if src is None or dst is None or len(src) != 4 or len(dst) != 4:
        ranks = f"reshapes a {len(src) if src else '?'}-D tensor to {len(dst) if dst else '?'}-D"
        return ctx.fail("shuffle.rank", ranks)
    if node.op == "Transpose" and next(iter(node.attrs.get("perm", [0]))) != 0:
        return ctx.fail("shuffle.batch", f"perm {list(node.attrs['perm'])} moves the batch axis")
    if src[0] != dst[0]:
        return ctx.fail("shuffle.batch", f"batch {src[0]} -> {dst[0]}")
    adjacent = ctx.rules["shuffle.adjacent"]
    if adjacent.params.get("enabled") and _touches(ctx, node, ("Slice", "Concat", "Split")):
        return ctx.fail("shuffle.adjacent", "reshape next to a Slice/Concat")
    return ctx.ok()


def _feeds_const_gemm(ctx: CheckContext, node: Node) -> bool:
    consumers = [n for n in ctx.graph.nodes if node.outputs[0] in n.inputs]
    return len(consumers) == 1 and consumers[0].op in ("Gemm", "MatMul") and ctx.graph.is_const(consumers[0].inputs[1])


def _touches(ctx: CheckContext, node: Node, ops: Sequence[str]) -> bool:
    for other in ctx.graph.nodes:
        if other.op in ops and (set(other.outputs) & set(node.inputs) or set(node.outputs) & set(other.inputs)):
            return True
    return False


def _gemm(ctx: CheckContext, node: Node) -> Check:
    if ctx.graph.is_const(node.inputs[1]):
        return ctx.ok("gemm.const", "constant weights: runs as a 1x1 convolution")
    return ctx.fail("layer.unsupported", "MatrixMultiply of two run-time tensors")


def _reduce(ctx: CheckContext, node: Node) -> Check:
    rule = ctx.rules["reduce.op"]
    is_max = node.op in ("GlobalMaxPool", "ReduceMax")
    if rule.params.get("max_ok") and is_max:
        axes = node.attrs.get("axes")
        if node.op == "GlobalMaxPool" or axes is None or sorted(int(a) % 4 for a in axes) == [1, 2, 3]:
            return ctx.ok("reduce.op", "Reduce-MAX over C, H, W")
    hint = " (AveragePool with kernel = HxW <= 8x8 stays on the DLA)" if node.op == "GlobalAveragePool" else ""
    return ctx.fail("reduce.op", f"{node.op} becomes a Reduce layer{hint}")


def _unary(ctx: CheckContext, node: Node) -> Check:
    if node.op in ctx.rules["unary.op"].params["allowed"]:
        return ctx.ok("unary.op")
    return ctx.fail("unary.op", f"{node.op} is not a DLA unary op on TensorRT {ctx.rules.trt_version}")


def _lrn(ctx: CheckContext, node: Node) -> Check:
    size = int(node.attrs.get("size", 0))
    return ctx.ok() if size in ctx.rules["lrn.window"].params["allowed"] else ctx.fail("lrn.window", f"size {size}")


def _unsupported(ctx: CheckContext, node: Node) -> Check:
    if node.op in ("QuantizeLinear", "DequantizeLinear"):
        return ctx.fail("general.qdq", f"{node.op} (explicit quantization)")
    return ctx.fail("layer.unsupported", f"{node.op} has no DLA implementation")


_CHECKS: Dict[str, Callable[[CheckContext, Node], Check]] = {
    "Conv": _conv,
    "ConvTranspose": _deconv,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "LpPool": _pool,
    "PRelu": _prelu,
    "Concat": _concat,
    "Resize": _resize,
    "Upsample": _resize,
    "Softmax": _softmax,
    "Slice": _slice,
    "Split": _slice,
    "Flatten": _shuffle,
    "Reshape": _shuffle,
    "Transpose": _shuffle,
    "Squeeze": _shuffle,
    "Unsqueeze": _shuffle,
    "Gemm": _gemm,
    "MatMul": _gemm,
    "LRN": _lrn,
    "BatchNormalization": lambda ctx, node: ctx.ok("scale.ok"),
}
for _op in ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Softplus", "Elu"):
    _CHECKS[_op] = _activation
for _op in ("Selu", "Softsign", "ThresholdedRelu", "Gelu", "Mish"):
    _CHECKS[_op] = _activation
for _op in ("Add", "Sum", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Equal", "Greater", "Less"):
    _CHECKS[_op] = _eltwise
for _op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd"):
    _CHECKS[_op] = _reduce
for _op in UNARY_OPS:
    _CHECKS[_op] = _unary
for _op in NO_DLA_OPS:
    _CHECKS[_op] = _unsupported


def check_node(ctx: CheckContext, node: Node) -> Check:
    """The op-specific verdict for ``node`` (general rules are applied by the caller)."""
    check = _CHECKS.get(node.op)
    if check is None:
        return ctx.fail("op.unknown", f"{node.op}: no DLA rule known")
    return check(ctx, node)
