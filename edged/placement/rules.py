"""The DLA rules table: one versioned place, keyed by TensorRT version and DLA generation.

Every number and every yes/no the analyser uses comes from here, each with the source key
and confidence of the fact sheet it was taken from (``shared/reference/dla-rules.md``):
H = read verbatim in a version-exact source, M = adjacent version or two agreeing sources,
L = single indirect source. ``recalled`` marks rows resting on recollection of the
developer guide ([REC]). Rows that are L or [REC] are the ones a real device should confirm
first; :meth:`Rule.mark` carries that into every explanation.

Tables exist for TensorRT 8.5 (JetPack 5.1: Xavier and Orin), 8.6 (JetPack 6.0: Orin; the 8.5
Orin rows, with the reason in ``RuleSet.basis``) and 10.3 (JetPack 6.1: Orin). Other versions
use the nearest older table and say so (:func:`rules_for`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from edged.versions import version_tuple

__all__ = ["TABLE_VERSION", "Rule", "RuleSet", "rules_for"]

# Bump when a row changes, so explanations and stored analyses name the table they used.
TABLE_VERSION = "2026.11-3"


@dataclass(frozen=True)
class Rule:
    id: str
    text: str  # what the rule demands, in words a non-TensorRT reader follows
    source: str
    confidence: str  # H, M or L
    recalled: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mark(self) -> str:
        """'[REC]', 'L', both or '' — shown wherever the rule decides something."""
        parts = []
        if self.recalled:
            parts.append("[REC]")
        if self.confidence == "L":
            parts.append("L")
        return " ".join(parts)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "source": self.source,
            "confidence": self.confidence,
            "recalled": self.recalled,
            "mark": self.mark,
        }


def _r(rid: str, text: str, source: str, conf: str, rec: bool = False, **params: Any) -> Rule:
    return Rule(rid, text, source, conf, rec, params)


_BASE: Tuple[Rule, ...] = (
    _r("general.no_dla", "this platform has no DLA core", "SW-README; DESIGN §2", "H"),
    _r(
        "general.precision",
        "the DLA computes in FP16 or INT8 only; FP32 layers run on the GPU",
        "DG-L-W; LOG-tfonnx",
        "H",
    ),
    _r(
        "general.static_shapes",
        "the DLA needs static shapes (only the batch dimension may be dynamic, fixed at build)",
        "H85 L6600; H103 L6293; DG-L",
        "H",
    ),
    _r("general.batch", "batch (all dims before C,H,W) at most 4096", "DG-L; DG84", "H", max_batch=4096),
    _r("general.dims", "each of C, H, W at most 8192", "DG-L; F85/F103", "H", max_dim=8192),
    _r("general.rank4", "DLA layers work on 4-D NCHW tensors only", "DG-L; SW-OPS", "M"),
    _r(
        "general.loadables",
        "at most 16 DLA subgraphs (loadables) per core; later ones go to the GPU",
        "DG-L; DG84; LOG-16sub",
        "H",
        per_core=16,
    ),
    _r(
        "general.qdq",
        "the DLA takes INT8 scales from a calibration cache, not from Q/DQ nodes",
        "NV-BLOG-YOLOv5; NV-BLOG-ZH; SW-OPS",
        "M",
    ),
    _r("layer.unsupported", "this TensorRT layer type has no DLA implementation", "H85 L3031; SW-OPS", "M"),
    _r("op.unknown", "no rule for this ONNX op; assumed GPU", "edged (conservative default)", "M"),
    # 3.1 Convolution / fully connected
    _r("conv.rank", "convolution must be 2-D", "H85 L1334; H103 L1208", "H"),
    _r("conv.kernel", "kernel size 1-32 on each axis", "H85 L1041; H103 L1208", "H", lo=1, hi=32),
    _r("conv.stride", "stride 1-8 on each axis", "H85 L1091; H103 L1233", "H", lo=1, hi=8),
    _r("conv.padding", "padding 0-31 and smaller than the kernel", "H85 L1120; H103 L1261", "H", lo=0, hi=31),
    _r("conv.dilation", "dilation 1-32", "H85 L1228; H103 L1288", "H", lo=1, hi=32),
    _r("conv.maps", "output channels 1-8192", "H85 L1067; H103 L1027", "H", hi=8192),
    _r("conv.groups", "groups at most 8192", "H85 L1155; H103 L1057", "H", hi=8192),
    _r(
        "conv.cbuf",
        "weights plus one input stripe must fit the 16 convolution-buffer banks",
        "DG84 (formula); SW-FAQ",
        "M",
        banks=16,
    ),
    # 3.2 Deconvolution
    _r(
        "deconv.kernel",
        "kernel and stride 1-32 (or a 1x64/96/128 strip), squares 23-32 excluded",
        "H85 L2446; H103 L2279; DG84",
        "H",
        hi=32,
        strips=(64, 96, 128),
    ),
    _r("deconv.padding", "transposed convolution padding must be 0", "H85 L2530; H103 L2337", "H"),
    _r("deconv.groups", "transposed convolution groups and dilation must be 1", "H85 L2561; DG84", "H"),
    # 3.3 Pooling
    _r("pool.type", "pooling must be max or average", "H85 L1712; H103 L1461", "H"),
    _r("pool.window", "pooling window 1-8", "H85 L1734; H103 L1616", "H", lo=1, hi=8),
    _r("pool.stride", "pooling stride 1-16", "H85 L1762; H103 L1641", "H", lo=1, hi=16),
    _r("pool.padding", "pooling padding 0-7", "H85 L1790; H103 L1670", "H", lo=0, hi=7),
    # 3.4 / 3.5 Activation, PReLU
    _r(
        "act.type",
        "activation must be ReLU, Sigmoid, TanH, Clip or LeakyReLU",
        "DG-L; DG84; SW-OPS",
        "H",
        allowed=("Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu"),
    ),
    _r("act.clip", "Clip must be ReLU-like: min 0, max 1-127", "DG84", "M", lo=1.0, hi=127.0),
    _r("prelu.slope", "PReLU slope must be a build-time constant", "H85 L4706; H103 L3897", "H"),
    # 3.6 / 3.16 ElementWise
    _r(
        "eltwise.op",
        "element-wise op must be Sum, Sub, Prod, Max or Min",
        "H85 L2907; LOG-pastebin",
        "H",
        allowed=("Add", "Sub", "Mul", "Max", "Min", "Sum"),
    ),
    _r("eltwise.compare", "comparisons run on the DLA only in the INT8 + cast pattern", "SW-OPS; DG-L", "L"),
    # 3.7 Scale (BatchNormalization)
    _r("scale.ok", "BatchNormalization becomes a per-channel Scale", "OX85 L248; DG84", "H"),
    # 3.8 LRN
    _r("lrn.window", "LRN window 3, 5, 7 or 9", "H85 L2052; H103 L1714", "H", allowed=(3, 5, 7, 9)),
    # 3.9 Concatenation
    _r("concat.axis", "concatenation on the channel axis only", "H85 L2408; H103 L2060; LOG-tfonnx", "H"),
    _r("concat.inputs", "concatenation needs at least two inputs", "DG-L; LOG-dsyolo", "H"),
    # 3.10 Resize
    _r("resize.static", "resize scales must be build-time constants (no sizes input)", "H85 L4911; OX85", "H"),
    _r("resize.scales", "N and C scales 1; H, W integer 1-32 (nearest) or 1-4 (linear)", "H85 L4944", "H"),
    _r("resize.mode", "resize must be nearest or linear with an allowed coordinate mode", "H85 L4889", "H"),
    # 3.11 Unary
    _r("unary.op", "unary op must be Abs", "H85 L3687", "H", allowed=("Abs",)),
    # 3.12 Slice
    _r("slice.form", "slice: 4-D, constant, stride 1, batch axis untouched", "H85 L4193; H103 L3285", "H"),
    # 3.13 Softmax
    _r("softmax.xavier", "Softmax does not run on the Xavier DLA", "H85 L2321", "H"),
    _r("softmax.axis", "Softmax on a 4-D tensor over the channel or a spatial axis", "H85 L2323", "H"),
    _r("softmax.size", "Softmax axis at most 8192 (others 1) or 1024", "H85 L2324-2330", "H"),
    _r("softmax.opset", "opset < 13 Softmax is flattened to 2-D by the parser", "OX85 addSoftmax", "H"),
    # 3.14 Shuffle
    _r("shuffle.rank", "reshape/transpose must keep 4-D input and output", "SW-OPS; LOG-held-out", "M", True),
    _r("shuffle.batch", "reshape/transpose may not move the batch dimension", "REC", "M", True),
    _r(
        "shuffle.adjacent",
        "8.5 rejects a reshape directly connected to Slice or Concat",
        "LOG-held-out (8.5.2)",
        "M",
        enabled=True,
    ),
    # 3.15 Reduce
    _r("reduce.op", "Reduce (incl. GlobalAveragePool) has no DLA support in 8.5", "SW-OPS; OX85", "H"),
    # Gemm / MatMul
    _r(
        "gemm.const",
        "Gemm/MatMul runs on the DLA as a 1x1 convolution when its weights are constant",
        "OX85 L1591; SW-OPS",
        "H",
    ),
    _r(
        "flatten.absorbed",
        "a Flatten (or a Reshape to [batch, features]) straight into a constant-weight Gemm folds into it",
        "SW-OPS (Gemm note); NVIDIA-AI-IOT/jetson_dla_tutorial README (Orin INT8 log: Reshape_14 inside "
        "{ForeignNode[Conv_0...Gemm_15]})",
        "M",
    ),
)

# Per-(TensorRT, DLA generation) changes to the base rows.
_OVERRIDES: Dict[Tuple[str, int], Tuple[Rule, ...]] = {
    # Xavier (1st gen) on 8.5: average pooling must count padding; Sub is Scale+Sum.
    ("8.5", 1): (
        _r("pool.avg_xavier", "Xavier average pooling must count padding (count_include_pad)", "H85 L1850", "H"),
        _r("general.loadables", "16 DLA subgraphs per core (8.4 text said 4)", "DG84; LOG-16sub", "M", per_core=16),
    ),
    ("8.5", 2): (
        _r("general.loadables", "16 DLA subgraphs per core (8.4 text said 4)", "DG84; LOG-16sub", "M", per_core=16),
    ),
    ("10.3", 2): (
        _r(
            "eltwise.op",
            "element-wise op must be Sum, Sub, Prod, Max, Min, Div or Pow",
            "DG-L; SW-OPS (Div/Pow native from 8.6.12)",
            "M",
            allowed=("Add", "Sub", "Mul", "Max", "Min", "Sum", "Div", "Pow"),
        ),
        _r(
            "unary.op",
            "unary op must be Abs, Sin, Cos or Atanh",
            "SW-OPS; REC",
            "L",
            True,
            allowed=("Abs", "Sin", "Cos", "Atanh"),
        ),
        _r(
            "reduce.op",
            "only Reduce-MAX over C, H, W (e.g. GlobalMaxPool) runs on the DLA; AVG/SUM/MIN do not",
            "SW-OPS; REC",
            "M",
            True,
            max_ok=True,
        ),
        _r("shuffle.adjacent", "8.5 reshape/Slice/Concat adjacency rule, unverified for 10.3", "REC", "L", True),
    ),
}

# JetPack 6.0's TensorRT 8.6.2 on Orin (DLA SW 3.14.1). Its guide page could not be read; every
# row that differs between the 8.5 and 10.3 tables was checked against what is known of 8.6:
_BASIS_86 = (
    "TensorRT 8.6 (JetPack 6.0, Orin): the 8.5 Orin rules. Div/Pow are still rejected (a public JetPack 6.0 "
    "8.6.2 log); NVIDIA's DLA operator matrix (Deep-Learning-Accelerator-SW, TensorRT 8.5.2 to 8.6.12) makes "
    "Div, Pow, Sin, Cos, Atanh and GlobalMaxPool native only 'as of 8.6.12', a DRIVE OS release; the "
    "convolution-buffer pre-check runs from 8.6.0 (its FAQ)"
)
_OVERRIDES[("8.6", 2)] = (
    *_OVERRIDES[("8.5", 2)],
    _r(
        "eltwise.op",
        "element-wise op must be Sum, Sub, Prod, Max or Min (8.6.2 still rejects Div and Pow)",
        "H85 L2907; LOG-held-out (8.6.2); SW-OPS (Div native only from 8.6.12)",
        "M",
        allowed=("Add", "Sub", "Mul", "Max", "Min", "Sum"),
    ),
    _r(
        "conv.cbuf",
        "weights plus one input stripe must fit the 16 convolution-buffer banks",
        "SW-FAQ (from 8.6.0); DG84",
        "H",
        banks=16,
    ),
    _r(
        "shuffle.adjacent",
        "reshape next to Slice or Concat is rejected (seen on 8.5.2, assumed for 8.6.2)",
        "LOG-held-out (8.5.2)",
        "L",
        enabled=True,
    ),
)

_SUPPORTED = {("8.5", 1), ("8.5", 2), ("8.6", 2), ("10.3", 2)}
_BASIS = {("8.6", 2): _BASIS_86}


@dataclass(frozen=True)
class RuleSet:
    trt_version: str  # the table used: "8.5", "8.6" or "10.3"
    dla_generation: int  # 1 Xavier, 2 Orin
    rules: Mapping[str, Rule]
    note: Optional[str] = None  # set when the table was chosen for a nearby version
    basis: Optional[str] = None  # how a table derived from another one was checked

    def __getitem__(self, rule_id: str) -> Rule:
        return self.rules[rule_id]

    @property
    def key(self) -> str:
        return f"trt{self.trt_version}/dla{self.dla_generation}/{TABLE_VERSION}"


def rules_for(trt_version: str, dla_generation: int) -> RuleSet:
    """The rules for a TensorRT version on a DLA generation (1 Xavier, 2 Orin).

    8.x uses the 8.5 table; 10.x (and 11.4+, where Orin regains the DLA) the 10.3 table;
    Xavier stops at 8.5, so any Xavier lookup gets 8.5. A note says when the table is a
    neighbour's rather than an exact match.
    """
    wanted = version_tuple(trt_version)
    if dla_generation == 1 or wanted < (8, 6):
        table = "8.5"
    elif wanted < (10,):
        table = "8.6"
    else:
        table = "10.3"
    note = None
    if wanted[:2] != version_tuple(table)[:2]:
        note = f"no table for TensorRT {trt_version}; using the {table} rules (nearest known)"
    if (table, dla_generation) not in _SUPPORTED:
        raise ValueError(f"no DLA rules for generation {dla_generation}")
    rules = {rule.id: rule for rule in _BASE}
    rules.update({rule.id: rule for rule in _OVERRIDES.get((table, dla_generation), ())})
    basis = _BASIS.get((table, dla_generation))
    return RuleSet(trt_version=table, dla_generation=dla_generation, rules=rules, note=note, basis=basis)
