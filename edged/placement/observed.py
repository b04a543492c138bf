"""Where layers really ran, against where the analysis predicted.

Two reports beat the prediction when they exist: the ONNX parser's per-node DLA capability
(TensorRT >= 10.16 / 11.1, ``OnnxParserFlag.REPORT_CAPABILITY_DLA``) and a built engine's
inspector, which lists each DLA subgraph as one ``{ForeignNode[first...last]}`` layer
(``{ForeignNode[name]}`` for a single layer).
Both arrive here as ``[{"name" or "layer": ..., "device": ...}]`` (``BuiltPlan.layer_placement``);
every disagreement is logged and returned, so the rules table can be corrected from it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from edged.placement.analysis import Analysis, with_devices

__all__ = ["Difference", "compare_reported", "reconcile"]

log = logging.getLogger(__name__)

# DLA subgraphs in engine-inspector and trtexec lists: "{ForeignNode[first...last]}", or for a
# one-layer island just "{ForeignNode[name]}" (NVIDIA/TensorRT v10.16 samples/sampleCudla/
# README.md; NVIDIA-AI-IOT/jetson_dla_tutorial README: "{ForeignNode[Conv_0]}"). An end may
# be a fused layer named "Gemm_15 + linear.bias + ..." (same tutorial log).
_FOREIGN = re.compile(r"^\{ForeignNode\[(?P<inner>.*)\]\}$")


@dataclass(frozen=True)
class Difference:
    node: str
    predicted: str
    reported: str
    rule: str  # the rule behind the prediction ("" when the node was predicted DLA)

    def as_dict(self) -> Dict[str, str]:
        return {"node": self.node, "predicted": self.predicted, "reported": self.reported, "rule": self.rule}


def _device(value: Any) -> str:
    text = str(value).lower()
    return "dla" if text.startswith("dla") else "gpu" if text.startswith("gpu") else text


def _end(text: str, order: Sequence[str], last: bool) -> Optional[str]:
    """The analysed node a ForeignNode end names: the whole text, or for a fused layer
    ("A + B + C") its first (start of a range) or last (end of a range) known part."""
    if text in order:
        return text
    parts = [p for p in text.split(" + ") if p in order]
    return (parts[-1] if last else parts[0]) if parts else None


def _foreign_range(name: str, order: Sequence[str]) -> Optional[List[str]]:
    match = _FOREIGN.match(name)
    if match is None:
        return None
    inner = match.group("inner")
    first_text, dots, last_text = inner.partition("...")
    if not dots:
        first_text = last_text = inner
    first, last = _end(first_text, order, last=False), _end(last_text, order, last=True)
    if first is None or last is None or order.index(last) < order.index(first):
        return None
    return list(order[order.index(first) : order.index(last) + 1])


def _expand(analysis: Analysis, report: Sequence[Mapping[str, Any]]) -> Dict[str, str]:
    """Node name → reported device, unrolling ForeignNode ranges over the analysed order."""
    order = [n.name for n in analysis.placed]
    seen: Dict[str, str] = {}
    for entry in report:
        # The TensorRT backend's rows name the layer "layer"; parser reports use "name".
        name, device = str(entry.get("name", entry.get("layer", ""))), _device(entry.get("device", ""))
        nodes = _foreign_range(name, order)
        if nodes is not None:
            for node in nodes:
                seen.setdefault(node, device)
        else:
            seen[name] = device
    return seen


def compare_reported(analysis: Analysis, report: Sequence[Mapping[str, Any]], source: str) -> List[Difference]:
    """Differences between the prediction and ``report`` (``source`` names where it came from:
    "parser" or "inspector"). The report wins; each difference is logged at WARNING."""
    reported = _expand(analysis, report)
    diffs: List[Difference] = []
    for node in analysis.placed:
        got = reported.get(node.name)
        if got is None or got == node.device:
            continue
        rule = node.rule.id if node.device == "gpu" and node.rule else ""
        diffs.append(Difference(node.name, node.device, got, rule))
    for diff in diffs:
        log.warning(
            "model %s: %s reports %s on %s, predicted %s%s",
            analysis.model,
            source,
            diff.node,
            diff.reported,
            diff.predicted,
            f" (rule {diff.rule})" if diff.rule else "",
        )
    if report and not diffs:
        log.info("model %s: %s agrees with the predicted placement", analysis.model, source)
    return diffs


def reconcile(
    analysis: Analysis, report: Sequence[Mapping[str, Any]], source: str
) -> Tuple[Analysis, List[Difference]]:
    """The analysis as the report says it really is (the report wins), and the differences."""
    diffs = compare_reported(analysis, report, source)
    if not diffs:
        return analysis, diffs
    return with_devices(analysis, {d.node: d.reported for d in diffs}, source), diffs
