"""How far a plan's outputs are from the reference's, accumulated over validation batches.

Per output tensor: max and mean absolute error, max and mean relative error (|a - r| over
max(|r|, 1e-6), so exact zeros in the reference do not divide by zero), and cosine
similarity per sample (mean and lowest). A ``classify`` model adds top-1 agreement and
top-5 overlap; a ``detect`` model decodes both plans' outputs with the pipeline's own
post-processor (decoder, threshold, class-aware NMS) and matches boxes of the same class
at IoU >= the threshold, greedily by score, giving the plan's box precision and recall
against the reference's detections.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from edged.backends.base import TensorSpec
from edged.config.model import ModelConfig
from edged.pipeline.detection.nms import iou

__all__ = ["Comparison"]

_REL_FLOOR = 1e-6
Outputs = Mapping[str, np.ndarray]


class _TensorStats:
    def __init__(self) -> None:
        self.max_abs = 0.0
        self.sum_abs = 0.0
        self.max_rel = 0.0
        self.sum_rel = 0.0
        self.elements = 0
        self.cosines: List[float] = []

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r: np.ndarray = ref.astype(np.float64).reshape(len(ref), -1)
        g: np.ndarray = got.astype(np.float64).reshape(len(got), -1)
        diff = np.abs(g - r)
        rel = diff / np.maximum(np.abs(r), _REL_FLOOR)
        self.max_abs = max(self.max_abs, float(diff.max(initial=0.0)))
        self.sum_abs += float(diff.sum())
        self.max_rel = max(self.max_rel, float(rel.max(initial=0.0)))
        self.sum_rel += float(rel.sum())
        self.elements += diff.size
        norms = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
        dots = np.einsum("ij,ij->i", r, g)
        both_zero = (np.linalg.norm(r, axis=1) == 0) & (np.linalg.norm(g, axis=1) == 0)
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
        self.cosines.extend(float(c) for c in cos)

    def figures(self) -> Dict[str, float]:
        n = max(self.elements, 1)
        return {
            "max_abs_error": _round(self.max_abs),
            "mean_abs_error": _round(self.sum_abs / n),
            "max_rel_error": _round(self.max_rel),
            "mean_rel_error": _round(self.sum_rel / n),
            "cosine_mean": _round(float(np.mean(self.cosines)) if self.cosines else 1.0),
            "cosine_min": _round(min(self.cosines) if self.cosines else 1.0),
        }


class _ClassifyHead:
    def __init__(self, output: str) -> None:
        self.output = output
        self.samples = 0
        self.top1_equal = 0
        self.top5_overlap = 0.0

    def add(self, ref: Outputs, got: Outputs) -> None:
        r = np.asarray(ref[self.output], dtype=np.float32).reshape(len(ref[self.output]), -1)
        g = np.asarray(got[self.output], dtype=np.float32).reshape(len(got[self.output]), -1)
        k = min(5, r.shape[1])
        self.top1_equal += int(np.sum(np.argmax(r, axis=1) == np.argmax(g, axis=1)))
        top_r = np.argsort(-r, axis=1, kind="stable")[:, :k]
        top_g = np.argsort(-g, axis=1, kind="stable")[:, :k]
        for a, b in zip(top_r, top_g):
            self.top5_overlap += len(set(a.tolist()) & set(b.tolist())) / k
        self.samples += len(r)

    def figures(self) -> Dict[str, Any]:
        n = max(self.samples, 1)
        return {"top1_agreement": _round(self.top1_equal / n), "top5_overlap": _round(self.top5_overlap / n)}


class _DetectHead:
    def __init__(self, model: ModelConfig, outputs: Sequence[TensorSpec], net_hw: Tuple[int, int], iou_min: float):
        from edged.pipeline.detection.postprocess import DetectPostprocessor

        self.decode = DetectPostprocessor(model.postprocess, outputs, net_hw, None)
        self.iou_min = iou_min
        self.ref_boxes = 0
        self.got_boxes = 0
        self.matched = 0

    def add(self, ref: Outputs, got: Outputs) -> None:
        for index in range(len(next(iter(ref.values())))):
            expected = self.decode(ref, index)["detections"]
            found = self.decode(got, index)["detections"]
            self.ref_boxes += len(expected)
            self.got_boxes += len(found)
            self.matched += _match(expected, found, self.iou_min)

    def figures(self) -> Dict[str, Any]:
        # With no detections on either side the plans agree: nothing was missed or invented.
        return {
            "box_precision": _round(self.matched / self.got_boxes if self.got_boxes else float(self.ref_boxes == 0)),
            "box_recall": _round(self.matched / self.ref_boxes if self.ref_boxes else float(self.got_boxes == 0)),
            "reference_boxes": self.ref_boxes,
            "plan_boxes": self.got_boxes,
        }


def _match(expected: List[Dict[str, Any]], found: List[Dict[str, Any]], iou_min: float) -> int:
    """Detections of ``found`` matched one-to-one to ``expected`` (same class, IoU >= iou_min),
    the highest-scored first, each to its best free partner."""
    free = list(range(len(expected)))
    matched = 0
    for det in sorted(found, key=lambda d: -float(d["score"])):
        partners = [i for i in free if expected[i]["class"] == det["class"]]
        if not partners:
            continue
        overlaps = iou(np.asarray(det["box"], dtype=np.float64), np.asarray([expected[i]["box"] for i in partners]))
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_min:
            free.remove(partners[best])
            matched += 1
    return matched


class Comparison:
    """Accumulates ``add(reference_outputs, plan_outputs)`` per batch; ``figures()`` at the end."""

    def __init__(
        self, model: ModelConfig, outputs: Sequence[TensorSpec], net_hw: Tuple[int, int], box_iou: float = 0.5
    ) -> None:
        self.names = [spec.name for spec in outputs]
        self.tensors = {name: _TensorStats() for name in self.names}
        self.samples = 0
        self.head: Optional[Any] = None
        kind = model.postprocess.type
        if kind == "classify":
            self.head = _ClassifyHead(model.postprocess.get("output") or self.names[0])
        elif kind == "detect":
            self.head = _DetectHead(model, outputs, net_hw, box_iou)

    def add(self, ref: Outputs, got: Outputs) -> None:
        missing = [name for name in self.names if name not in got]
        if missing:
            raise ValueError(f"the plan produced no output {', '.join(missing)}")
        for name in self.names:
            if np.shape(ref[name]) != np.shape(got[name]):
                raise ValueError(f"output {name}: shape {np.shape(got[name])} != reference {np.shape(ref[name])}")
            self.tensors[name].add(np.asarray(ref[name]), np.asarray(got[name]))
        if self.head is not None:
            self.head.add(ref, got)
        self.samples += len(ref[self.names[0]])

    def figures(self) -> Dict[str, Any]:
        doc: Dict[str, Any] = {"outputs": {name: stats.figures() for name, stats in self.tensors.items()}}
        if self.head is not None:
            doc.update(self.head.figures())
        return doc


def _round(value: float) -> float:
    return float(f"{value:.6g}")
