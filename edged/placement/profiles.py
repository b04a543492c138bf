"""Per-(model, device) performance profiles: measured after a build, estimated before.

A measured profile (a short benchmark right after the build, stored in the plan manifest)
always replaces an estimate. Estimates exist so placement can start before anything is
built; they are deliberately simple and labelled ``estimated`` everywhere they appear.

Estimate model: latency = fixed overhead + MACs / rate, with rate = speed x BASE_MACS_PER_S
for the precision. BASE is one AGX Orin GPU at batch 1, calibrated on NVIDIA's published
points (DESIGN.md §6): 2 DLA cores run ResNet-50 INT8 (≈4.1 GMAC) at ≈2000 img/s, so one
core ≈ 4.1 TMAC/s effective; YOLOv5s INT8 at batch 1 takes 3.8 ms on a DLA and 1.8 ms on
the GPU, so the GPU ≈ 2.1x one core ≈ 8.6 TMAC/s. FP16 is taken as half the INT8 rate
(an assumption, not a published figure). Active power: the DLA's 3-5x better perf/W puts a
core near 2 W where the GPU draws ~15 W for the same kind of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from edged.placement.analysis import Analysis
from edged.placement.target import Target

__all__ = ["Profile", "estimate_profiles", "profile_from_dict", "BASE_MACS_PER_S"]

BASE_MACS_PER_S = {"int8": 8.6e12, "fp16": 4.3e12, "fp32": 1.4e12}
FIXED_OVERHEAD_MS = 0.3  # launch, synchronisation and I/O copies of one inference
TRANSITION_MS = 0.15  # one GPU<->DLA reformat + hand-over
ACTIVE_POWER_MW = {"gpu": 15000.0, "dla": 2000.0, "cpu": 10000.0}


@dataclass(frozen=True)
class Profile:
    model: str
    device: str
    latency_ms: float  # one inference of one batch, alone on the device
    power_mw: float  # extra power drawn while the device runs it
    gpu_ms: float = 0.0  # GPU time a DLA placement still needs (fallback layers, reformats)
    batch: int = 1
    source: str = "estimated"  # estimated | measured

    @property
    def max_fps(self) -> float:
        return 1000.0 * self.batch / self.latency_ms

    def busy(self, fps: float) -> float:
        """Fraction of the device this model keeps busy at ``fps`` frames per second."""
        return fps / self.batch * self.latency_ms / 1000.0

    def power_at(self, fps: float) -> float:
        """Average extra power (mW) at ``fps``: energy per batch x batches per second."""
        return self.power_mw * self.busy(fps)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "latency_ms": round(self.latency_ms, 3),
            "power_mw": round(self.power_mw, 1),
            "gpu_ms": round(self.gpu_ms, 3),
            "batch": self.batch,
            "source": self.source,
        }


def profile_from_dict(doc: Mapping[str, Any]) -> Profile:
    """A measured profile as stored in a plan manifest."""
    return Profile(
        model=str(doc["model"]),
        device=str(doc["device"]),
        latency_ms=float(doc["latency_ms"]),
        power_mw=float(doc["power_mw"]),
        gpu_ms=float(doc.get("gpu_ms", 0.0)),
        batch=int(doc.get("batch", 1)),
        source=str(doc.get("source", "measured")),
    )


def estimate_profiles(analysis: Analysis, target: Target, batch: int = 1) -> Dict[str, Profile]:
    """Estimated profile of the model on every device of ``target`` it can use.

    DLA devices appear only when the analysis says the DLA is worth using; their GPU part
    (fallback layers and transitions) is charged to the GPU through ``gpu_ms``.
    """
    out: Dict[str, Profile] = {}
    precision = analysis.precision
    macs = analysis.macs * batch
    for device in target.devices():
        if device.startswith("dla"):
            if not analysis.dla_usable:
                continue
            gpu_macs = _gpu_macs(analysis) * batch
            rate = target.speed_of(device) * BASE_MACS_PER_S[precision]
            gpu_rate = target.speed_of("gpu") * BASE_MACS_PER_S[precision]
            gpu_ms = 1000.0 * gpu_macs / gpu_rate + analysis.transitions * TRANSITION_MS
            latency = FIXED_OVERHEAD_MS + 1000.0 * (macs - gpu_macs) / rate + gpu_ms
            out[device] = Profile(analysis.model, device, latency, ACTIVE_POWER_MW["dla"], gpu_ms, batch)
        else:
            kind = "cpu" if device == "cpu" else "gpu"
            rate = target.speed_of(device) * BASE_MACS_PER_S["fp32" if kind == "cpu" else precision]
            latency = FIXED_OVERHEAD_MS + 1000.0 * macs / rate
            out[device] = Profile(analysis.model, device, latency, ACTIVE_POWER_MW[kind], 0.0, batch)
    return out


def _gpu_macs(analysis: Analysis) -> int:
    share: Optional[float] = None
    placed = analysis.placed
    if placed:
        share = sum(1 for n in placed if n.device == "gpu") / len(placed)
    # Fallback layers are usually the cheap ones (heads, norms); counting their share of
    # layers rather than of MACs over-charges the GPU, which errs towards the GPU.
    return int(analysis.macs * (share or 0.0))
