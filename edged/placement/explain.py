"""``edged placement explain``: analyse models for a platform, place them, and say why.

Written for someone who has never read a TensorRT build log: every GPU layer names the rule
that sent it there in plain words, with the rule id, confidence and [REC]/L mark for anyone
who wants to check the fact sheet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from edged.placement.analysis import DEFAULT_MAX_DLA_SUBGRAPHS, Analysis, NodeResult, analyse
from edged.placement.graph import load_graph
from edged.placement.profiles import estimate_profiles
from edged.placement.solver import UTILISATION_CAP, Placement, Request, place
from edged.placement.target import Target

__all__ = ["ModelPolicy", "Report", "explain", "render_text"]


@dataclass(frozen=True)
class ModelPolicy:
    name: str
    path: str
    precision: str = "fp16"
    batch: int = 1
    device: str = "auto"  # auto | gpu | dla | dla0 | dla1 | cpu
    gpu_fallback: bool = True
    max_dla_subgraphs: int = DEFAULT_MAX_DLA_SUBGRAPHS
    target_fps: Optional[float] = None
    latency_budget_ms: Optional[float] = None


@dataclass
class Report:
    target: Target
    analyses: Dict[str, Analysis]
    placement: Placement
    notes: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "platform": self.target.as_dict(),
            "models": {name: a.as_dict() for name, a in self.analyses.items()},
            "placement": self.placement.as_dict(),
            "notes": list(self.notes),
        }


def allowed_devices(policy: ModelPolicy, devices: Sequence[str]) -> Dict[str, str]:
    """Devices the policy rules out, with the reason (``device: dla1`` rules out the rest)."""
    out: Dict[str, str] = {}
    for device in devices:
        wanted = policy.device
        ok = (
            wanted == "auto"
            or wanted == device
            or (wanted == "dla" and device.startswith("dla"))
            or (wanted == "gpu" and device.startswith("gpu"))
        )
        if not ok:
            out[device] = f"config asks for device {wanted}"
    return out


def build_request(policy: ModelPolicy, analysis: Analysis, target: Target) -> Request:
    profiles = estimate_profiles(analysis, target, policy.batch)
    excluded = allowed_devices(policy, target.devices())
    for device in target.devices():
        if device.startswith("dla") and device not in profiles:
            short = "too fragmented" if analysis.verdict == "fragmented" else "no DLA benefit"
            excluded.setdefault(device, f"{short}: {'; '.join(analysis.reasons)}")
    usable = {d: p for d, p in profiles.items() if d not in excluded}
    return Request(policy.name, usable, policy.target_fps, policy.latency_budget_ms, excluded)


def explain(policies: Sequence[ModelPolicy], target: Target) -> Report:
    analyses: Dict[str, Analysis] = {}
    requests: List[Request] = []
    notes: List[str] = []
    for policy in policies:
        graph = load_graph(policy.path, policy.batch)
        analysis = analyse(
            graph,
            precision=policy.precision,
            trt_version=target.trt_version or "10.3",
            dla_generation=target.dla_generation,
            model=policy.name,
            max_dla_subgraphs=policy.max_dla_subgraphs,
            gpu_fallback=policy.gpu_fallback,
        )
        analyses[policy.name] = analysis
        requests.append(build_request(policy, analysis, target))
        for said in (analysis.rules.note, analysis.rules.basis):
            if target.dla_generation and said and said not in notes:
                notes.append(said)
    return Report(target, analyses, place(requests, target.devices()), notes)


def _where(node: NodeResult) -> str:
    if node.device == "dla":
        return f"DLA (piece {node.subgraph + 1})" if node.subgraph is not None else "DLA"
    return {"gpu": "GPU", "build-time": "(folded)", "removed": "(removed)"}.get(node.device, node.device)


def _why(node: NodeResult) -> str:
    if node.rule is None or (node.device == "dla" and node.detail == "supported"):
        return node.detail
    mark = f", {node.rule.mark}" if node.rule.mark else ""
    return f"{node.detail}  [{node.rule.id}, confidence {node.rule.confidence}{mark}]"


def _table(rows: List[List[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]


def render_analysis(a: Analysis, path: str) -> List[str]:
    lines = [f"Model {a.model} ({os.path.basename(path)}, {a.precision.upper()})"]
    lines.append(f"  Verdict: {a.verdict_text}")
    lines += [f"    {reason}" for reason in a.reasons]
    lines += [f"  Note: {note}" for note in a.notes]
    if a.dla_available:
        lines.append(
            f"  DLA pieces (loadables): {len(a.subgraphs)}; a DLA core holds at most {a.loadable_limit}, "
            f"and more than {a.max_dla_subgraphs} is treated as too fragmented"
        )
        lines.append(f"  GPU<->DLA hand-overs: {a.transitions} (each converts the tensor format and waits)")
    placed = a.placed
    reasons = {(n.device, n.rule.id if n.rule else "") for n in placed}
    if placed and len(reasons) == 1 and placed[0].device == "gpu":
        # One reason for every layer (FP32, no DLA): a table would repeat it N times.
        lines.append(f"  All {len(placed)} layers run on the GPU: {_why(placed[0])}")
        return lines
    rows = [["#", "layer (ONNX node)", "op", "TensorRT layer", "runs on", "why"]]
    for i, node in enumerate(a.nodes, 1):
        rows.append([str(i), node.name, node.op, "+".join(node.layers), _where(node), _why(node)])
    lines += _table(rows)
    marked = sorted({n.rule.id for n in a.nodes if n.rule is not None and n.rule.mark})
    if marked:
        lines.append(
            f"  Unconfirmed rules used ([REC]: recalled, L: single source; confirm on a device): {', '.join(marked)}"
        )
    return lines


def render_placement(p: Placement) -> List[str]:
    lines = ["Placement" + ("" if p.feasible else " (INCOMPLETE: not every target can be met)")]
    rows = [["model", "device(s)", "target fps", "predicted fps", "latency", "power", "why"]]
    for name, a in sorted(p.assignments.items()):
        rows.append(
            [
                name,
                " + ".join(a.devices) or "-",
                f"{a.target_fps:g}",
                f"{a.predicted_fps:.1f}",
                f"{a.latency_ms:.2f} ms",
                f"{a.power_mw / 1000:.2f} W",
                a.reason,
            ]
        )
    lines += _table(rows)
    for name, a in sorted(p.assignments.items()):
        grouped: Dict[str, List[str]] = {}
        for device, why in sorted(a.excluded.items()):
            grouped.setdefault(why, []).append(device)
        lines += [f"  {name} not on {', '.join(devs)}: {why}" for why, devs in grouped.items()]
    busy = ", ".join(f"{d} {u:.0%}" for d, u in p.utilisation.items())
    lines.append(f"  Predicted utilisation (cap {UTILISATION_CAP:.0%}): {busy}")
    lines += [f"  Cannot meet: {s}" for s in p.shortfalls]
    return lines


def render_text(report: Report, paths: Dict[str, str]) -> str:
    t = report.target
    trt = f"TensorRT {t.trt_version}" if t.trt_version else "no TensorRT (ONNX Runtime)"
    if t.trt_version and t.trt_origin:
        trt += f" ({t.trt_origin})"
    lines = [
        f"Platform {t.name}: {t.soc or 'not a Jetson'}, {t.dla_cores} DLA core(s), {trt}, "
        f"devices {', '.join(t.devices())}",
        "The DLA is a low-power inference engine beside the GPU; layers it cannot run fall back to the GPU.",
    ]
    lines += [f"Note: {n}" for n in report.notes]
    for name, analysis in report.analyses.items():
        lines.append("")
        lines += render_analysis(analysis, paths.get(name, name))
    lines.append("")
    lines += render_placement(report.placement)
    lines.append("Profiles are estimates until each plan is built and measured.")
    return "\n".join(lines) + "\n"
