"""Class-aware non-maximum suppression, vectorised with numpy."""

from __future__ import annotations

from typing import List

import numpy as np

__all__ = ["iou", "nms"]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1,y1,x2,y2 box against many."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    overlap: np.ndarray = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return overlap


def nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float, max_keep: int = 300
) -> np.ndarray:
    """Indices of kept boxes, best first. Boxes of different classes never suppress each other:
    each class is shifted into its own coordinate range, so one greedy pass handles all."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(np.max(boxes)) - float(np.min(boxes)) + 1.0
    shifted = boxes.astype(np.float64) + (classes.astype(np.float64) * span)[:, None]
    order = np.argsort(-scores, kind="stable")
    keep: List[int] = []
    while order.size and len(keep) < max_keep:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        order = rest[iou(shifted[best], shifted[rest]) <= iou_threshold]
    kept: np.ndarray = np.asarray(keep, dtype=np.int64)
    return kept
