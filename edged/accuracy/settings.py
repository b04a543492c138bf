"""A model's ``accuracy`` config section as typed settings, with thresholds per precision.

The default limits: an FP16 plan should be indistinguishable from FP32 on the top class
(>= 99% agreement); INT8 post-training quantisation may move a few borderline samples
(>= 97%). Cosine similarity is the measure for models without a classify or detect head.
A DLA plan is judged by the limits of its precision. Every limit can be set per model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Optional

from edged.config.model import ModelConfig

__all__ = ["Thresholds", "AccuracySettings", "DEFAULT_THRESHOLDS", "settings_for", "needs_gate"]


@dataclass(frozen=True)
class Thresholds:
    min_top1_agreement: float
    min_top5_overlap: float
    min_box_precision: float
    min_box_recall: float
    min_box_iou: float
    min_cosine: float
    max_abs_error: Optional[float] = None

    def as_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


DEFAULT_THRESHOLDS: Dict[str, Thresholds] = {
    "fp16": Thresholds(
        min_top1_agreement=0.99,
        min_top5_overlap=0.95,
        min_box_precision=0.95,
        min_box_recall=0.95,
        min_box_iou=0.5,
        min_cosine=0.999,
    ),
    "int8": Thresholds(
        min_top1_agreement=0.97,
        min_top5_overlap=0.90,
        min_box_precision=0.90,
        min_box_recall=0.90,
        min_box_iou=0.5,
        min_cosine=0.99,
    ),
    # An fp32 plan on a device other than the reference's (the GPU against ONNX Runtime on
    # the CPU) differs only by summation order and fused kernels.
    "fp32": Thresholds(
        min_top1_agreement=0.99,
        min_top5_overlap=0.98,
        min_box_precision=0.98,
        min_box_recall=0.98,
        min_box_iou=0.5,
        min_cosine=0.9999,
    ),
}


@dataclass(frozen=True)
class AccuracySettings:
    images: Optional[str]
    max_images: int
    capture_s: float
    capture_max_bytes: int
    time_budget_s: float
    threads: int
    thresholds: Mapping[str, Thresholds]

    def thresholds_for(self, precision: str) -> Thresholds:
        return self.thresholds.get(precision) or DEFAULT_THRESHOLDS[precision]


def settings_for(model: ModelConfig) -> AccuracySettings:
    """Settings from the model's (defaults-filled) ``accuracy`` section."""
    section = model.accuracy
    thresholds: Dict[str, Thresholds] = {}
    for precision, default in DEFAULT_THRESHOLDS.items():
        merged = default.as_dict()
        merged.update({k: float(v) for k, v in (section.get(precision) or {}).items()})
        thresholds[precision] = Thresholds(**merged)
    return AccuracySettings(
        images=section.get("images"),
        max_images=int(section.get("max_images", 64)),
        capture_s=float(section.get("capture_s", 60.0)),
        capture_max_bytes=int(section.get("capture_max_mb", 64)) << 20,
        time_budget_s=float(section.get("time_budget_s", 120.0)),
        threads=int(section.get("threads", 1)),
        thresholds=thresholds,
    )


def needs_gate(precision: str, device: str) -> bool:
    """Every reduced-precision plan, and every DLA plan, is checked before it serves."""
    return precision != "fp32" or device.startswith("dla")
