"""Layer-level DLA partition analysis of one model for one target.

Per node: the TensorRT layers it becomes, DLA or GPU, and the rule that decided. Then the
DLA subgraphs TensorRT would form, the GPU↔DLA transitions between them, the loadable
count against the per-core limit, and a verdict: full DLA, DLA with N fallbacks, too
fragmented (→ GPU), or GPU.

Subgraphs: TensorRT cuts the network wherever the device changes and never forms a DLA
subgraph that a path leaves to the GPU and re-enters (the result would be cyclic). We give
each node a level, the largest number of device changes on any path from an input, and
group connected DLA nodes of one level; a path that leaves and comes back crosses two
changes, so it can never join a group it left. This may split more finely than TensorRT in
rare diamond shapes; it never merges what TensorRT keeps apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from edged.placement.checks import Check, CheckContext, check_node
from edged.placement.graph import Graph, Node
from edged.placement.layers import ELIDED_OPS, trt_layers
from edged.placement.rules import Rule, RuleSet, rules_for

__all__ = ["NodeResult", "Analysis", "analyse", "with_devices", "DEFAULT_MAX_DLA_SUBGRAPHS", "VERDICT_TEXT"]

# Policy default, not an NVIDIA limit: each extra subgraph adds a GPU↔DLA round trip with
# a reformat and a synchronisation; NVIDIA's GroupNorm example ran at half the rate of its
# BatchNorm twin. Users can raise it per model (max_dla_subgraphs).
DEFAULT_MAX_DLA_SUBGRAPHS = 4

VERDICT_TEXT = {
    "dla": "full DLA: every layer runs on the DLA",
    "dla_fallback": "DLA with GPU fallback",
    "fragmented": "too fragmented: run on the GPU instead",
    "gpu": "GPU: nothing (or nothing useful) runs on the DLA",
}


@dataclass(frozen=True)
class NodeResult:
    name: str
    op: str
    layers: Tuple[str, ...]
    device: str  # dla | gpu | build-time (constant-folded) | removed (elided at build)
    rule: Optional[Rule]
    detail: str
    subgraph: Optional[int] = None

    def as_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "layers": list(self.layers),
            "device": self.device,
            "rule": self.rule.id if self.rule else None,
            "mark": self.rule.mark if self.rule else "",
            "detail": self.detail,
            "subgraph": self.subgraph,
        }


@dataclass
class Analysis:
    model: str
    precision: str
    rules: RuleSet
    dla_available: bool
    nodes: List[NodeResult]
    subgraphs: List[List[str]]
    transitions: int
    loadable_limit: int
    max_dla_subgraphs: int
    verdict: str
    reasons: List[str] = field(default_factory=list)
    macs: int = 0
    notes: List[str] = field(default_factory=list)
    gpu_fallback: bool = True
    graph: Optional[Graph] = field(default=None, repr=False, compare=False)

    @property
    def placed(self) -> List[NodeResult]:
        return [n for n in self.nodes if n.device in ("dla", "gpu")]

    @property
    def fallbacks(self) -> List[NodeResult]:
        return [n for n in self.nodes if n.device == "gpu"]

    @property
    def dla_usable(self) -> bool:
        return self.verdict in ("dla", "dla_fallback")

    @property
    def verdict_text(self) -> str:
        text = VERDICT_TEXT[self.verdict]
        if self.verdict == "dla_fallback":
            text = f"DLA with {len(self.fallbacks)} layer(s) falling back to the GPU"
        return text

    def as_dict(self) -> Dict[str, Any]:
        return {
            "model": self.model,
            "precision": self.precision,
            "rules": self.rules.key,
            "rules_note": self.rules.note,
            "rules_basis": self.rules.basis,
            "dla_available": self.dla_available,
            "verdict": self.verdict,
            "verdict_text": self.verdict_text,
            "reasons": list(self.reasons),
            "dla_subgraphs": len(self.subgraphs),
            "max_dla_subgraphs": self.max_dla_subgraphs,
            "loadable_limit_per_core": self.loadable_limit,
            "transitions": self.transitions,
            "macs": self.macs,
            "notes": list(self.notes),
            "nodes": [n.as_dict() for n in self.nodes],
            "rules_used": {n.rule.id: n.rule.as_dict() for n in self.nodes if n.rule is not None},
        }


def _general(ctx: CheckContext, graph: Graph, node: Node) -> Optional[Check]:
    """Rules that apply to every layer before its own: precision, static shapes."""
    if ctx.precision not in ("fp16", "int8"):
        return ctx.fail("general.precision", f"model is built in {ctx.precision.upper()}; the DLA needs FP16 or INT8")
    for tensor, shape in _tensors(graph, node):
        if any(isinstance(d, str) for d in shape):
            return ctx.fail("general.static_shapes", f"'{tensor}' has dynamic shape {_fmt(shape)}")
    return None


def _tensors(graph: Graph, node: Node) -> List[Tuple[str, Tuple[Any, ...]]]:
    found = []
    for tensor in tuple(node.inputs) + tuple(node.outputs):
        shape = graph.shape(tensor) if tensor and not graph.is_const(tensor) else None
        if shape is not None:
            found.append((tensor, shape))
    return found


def _sizes(ctx: CheckContext, graph: Graph, node: Node) -> Optional[Check]:
    """Size limits, checked after the layer's own rules so the more basic reason wins."""
    limits = ctx.rules["general.dims"].params["max_dim"], ctx.rules["general.batch"].params["max_batch"]
    for tensor, shape in _tensors(graph, node):
        dims = [int(d) for d in shape]
        big = [d for d in dims[-3:] if d > limits[0]]
        if big:
            return ctx.fail("general.dims", f"'{tensor}' dimension {big[0]} > {limits[0]}")
        batch = 1
        for d in dims[:-3]:
            batch *= d
        if batch > limits[1]:
            return ctx.fail("general.batch", f"batch {batch} > {limits[1]}")
    return None


def _fmt(shape: Tuple[Any, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _macs(graph: Graph, node: Node) -> int:
    out = graph.shape(node.outputs[0]) if node.outputs else None
    weight = graph.shape(node.inputs[1]) if len(node.inputs) > 1 else None
    if not out or not weight or not all(isinstance(d, int) for d in tuple(out) + tuple(weight)):
        return 0
    size = 1
    for d in out:
        size *= int(d)
    if node.op in ("Conv", "ConvTranspose"):
        per = 1
        for d in weight[1:]:
            per *= int(d)
        return size * per
    if node.op in ("Gemm", "MatMul"):
        k = int(weight[0]) if node.op == "MatMul" or not node.attrs.get("transB") else int(weight[1])
        return size * k
    return 0


def analyse(
    graph: Graph,
    *,
    precision: str,
    trt_version: str,
    dla_generation: Optional[int],
    model: str = "model",
    max_dla_subgraphs: int = DEFAULT_MAX_DLA_SUBGRAPHS,
    gpu_fallback: bool = True,
) -> Analysis:
    rules = rules_for(trt_version, dla_generation or 2)
    ctx = CheckContext(graph, rules, precision)
    results: List[NodeResult] = []
    macs = 0
    for node in graph.nodes:
        macs += _macs(graph, node)
        layers = trt_layers(node.op)
        if node.name in graph.folded:
            results.append(NodeResult(node.name, node.op, layers, "build-time", None, "constant, computed at build"))
            continue
        if node.op in ELIDED_OPS:
            results.append(NodeResult(node.name, node.op, layers, "removed", None, "no-op at inference"))
            continue
        if dla_generation is None:
            check = ctx.fail("general.no_dla", "no DLA on this platform")
        else:
            check = _general(ctx, graph, node) or check_node(ctx, node)
            if check.dla:
                check = _sizes(ctx, graph, node) or check
        results.append(NodeResult(node.name, node.op, layers, "dla" if check.dla else "gpu", check.rule, check.detail))
    analysis = Analysis(
        model=model,
        precision=precision,
        rules=rules,
        dla_available=dla_generation is not None,
        nodes=results,
        subgraphs=[],
        transitions=0,
        loadable_limit=int(rules["general.loadables"].params["per_core"]),
        max_dla_subgraphs=max_dla_subgraphs,
        verdict="gpu",
        macs=macs,
        gpu_fallback=gpu_fallback,
        graph=graph,
    )
    _conclude(analysis, graph)
    for name, shape in sorted(graph.dynamic_inputs.items()):
        analysis.notes.append(
            f"input '{name}' is declared {_fmt(shape)}; the plan is built for batch {graph.batch}"
            + ("" if all(isinstance(d, int) for d in shape[1:]) else " and the other dynamic dimensions stay dynamic")
        )
    return analysis


def _conclude(a: Analysis, graph: Graph) -> None:
    """Pieces, hand-overs and verdict from the per-node devices in ``a.nodes``."""
    a.nodes, a.subgraphs = _partition(graph, a.nodes, a.rules["general.loadables"], a.loadable_limit)
    a.transitions = _transitions(graph, a.nodes)
    a.reasons = []
    _verdict(a, a.gpu_fallback)


def with_devices(analysis: Analysis, devices: Mapping[str, str], source: str) -> Analysis:
    """A copy of ``analysis`` where the nodes in ``devices`` (name → "dla"/"gpu") run where
    a report says they ran; pieces, hand-overs and verdict are recomputed."""
    if analysis.graph is None:
        raise ValueError("analysis has no graph")
    nodes = []
    for n in analysis.nodes:
        got = devices.get(n.name)
        if got in ("dla", "gpu") and got != n.device and n.device in ("dla", "gpu"):
            detail = f"{source} reports {got.upper()}; predicted {n.device.upper()}: {n.detail}"
            n = NodeResult(n.name, n.op, n.layers, got, n.rule, detail)
        nodes.append(n)
    copy = replace(analysis, nodes=nodes, reasons=[], notes=list(analysis.notes))
    _conclude(copy, analysis.graph)
    return copy


def _aliases(graph: Graph, results: List[NodeResult]) -> Dict[str, str]:
    """Tensor → producing node name, looking through removed (elided) nodes."""
    removed = {r.name for r in results if r.device == "removed"}
    producer: Dict[str, str] = {}
    for node in graph.nodes:
        for out in node.outputs:
            if node.name in removed and node.inputs and node.inputs[0] in producer:
                producer[out] = producer[node.inputs[0]]
            elif node.name not in removed:
                producer[out] = node.name
    return producer


def _partition(
    graph: Graph, results: List[NodeResult], loadables_rule: Rule, limit: int
) -> Tuple[List[NodeResult], List[List[str]]]:
    by_name = {r.name: r for r in results}
    producer = _aliases(graph, results)
    level: Dict[str, int] = {}
    parent: Dict[str, str] = {}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for node in graph.nodes:
        me = by_name[node.name]
        if me.device not in ("dla", "gpu"):
            continue
        preds = [producer[t] for t in node.inputs if t in producer and by_name[producer[t]].device in ("dla", "gpu")]
        level[node.name] = max(
            (level[p] + (by_name[p].device != me.device) for p in preds), default=0 if me.device == "gpu" else 1
        )
        parent[node.name] = node.name
        if me.device == "dla":
            for p in preds:
                if by_name[p].device == "dla" and level[p] == level[node.name]:
                    parent[find(p)] = find(node.name)
    groups: Dict[str, List[str]] = {}
    for node in graph.nodes:
        if by_name[node.name].device == "dla":
            groups.setdefault(find(node.name), []).append(node.name)
    ordered = sorted(groups.values(), key=lambda g: [n.name for n in graph.nodes].index(g[0]))
    kept, overflow = ordered[:limit], ordered[limit:]
    over_names: Set[str] = {name for group in overflow for name in group}
    index = {name: i for i, group in enumerate(kept) for name in group}
    out: List[NodeResult] = []
    for r in results:
        if r.name in over_names:
            detail = f"DLA subgraph beyond the {limit} loadables a core holds"
            out.append(NodeResult(r.name, r.op, r.layers, "gpu", loadables_rule, detail))
        else:
            out.append(NodeResult(r.name, r.op, r.layers, r.device, r.rule, r.detail, index.get(r.name)))
    return out, kept


def _transitions(graph: Graph, results: List[NodeResult]) -> int:
    """Tensors that cross between a GPU layer and a DLA layer (each costs a reformat)."""
    by_name = {r.name: r for r in results}
    producer = _aliases(graph, results)
    crossings: Set[Tuple[str, str]] = set()
    for node in graph.nodes:
        me = by_name[node.name]
        if me.device not in ("dla", "gpu"):
            continue
        for tensor in node.inputs:
            src = by_name.get(producer.get(tensor, ""))
            if src is not None and src.device in ("dla", "gpu") and src.device != me.device:
                crossings.add((tensor, me.device))
    return len(crossings)


def _verdict(a: Analysis, gpu_fallback: bool) -> None:
    placed = a.placed
    dla = [n for n in placed if n.device == "dla"]
    if not a.dla_available:
        a.verdict, a.reasons = "gpu", ["this platform has no DLA"]
        return
    if not dla:
        first = placed[0] if placed else None
        a.verdict = "gpu"
        a.reasons = [f"no layer can run on the DLA (first: {first.name}: {first.detail})" if first else "empty model"]
        if a.precision == "fp32":
            a.reasons = ["the model is built in FP32; the DLA runs FP16 or INT8 only (set precision: fp16 or int8)"]
        return
    if len(dla) == len(placed):
        a.verdict = "dla"
        if a.precision == "int8":
            a.reasons.append("INT8 on the DLA needs a calibration cache (Q/DQ nodes are not used by the DLA)")
        return
    if not gpu_fallback:
        a.verdict = "gpu"
        a.reasons = [
            f"gpu_fallback is off and {len(placed) - len(dla)} layer(s) cannot run on the DLA: the build would fail"
        ]
        return
    if len(a.subgraphs) > a.max_dla_subgraphs:
        a.verdict = "fragmented"
        a.reasons = [
            f"{len(a.subgraphs)} DLA subgraphs > max_dla_subgraphs {a.max_dla_subgraphs}; "
            f"{a.transitions} GPU<->DLA transitions would cost more than the DLA saves"
        ]
        return
    a.verdict = "dla_fallback"
    a.reasons = [
        f"{len(placed) - len(dla)} of {len(placed)} layers run on the GPU in {len(a.subgraphs)} DLA subgraph(s)"
    ]
