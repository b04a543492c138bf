"""Raw detector outputs of one frame -> candidate boxes (x1, y1, x2, y2), scores, classes.

Layouts:
- yolov5: [anchors, 5 + classes] rows of cx, cy, w, h (network pixels), objectness, class
  probabilities; score = objectness * class probability.
- yolov8: [4 + classes, anchors] (transposed, no objectness): cx, cy, w, h, class scores.
- ssd: boxes [anchors, 4] as x1, y1, x2, y2 normalised to 0..1, and scores [anchors, classes]
  (class 0 is the background when ``background`` is set).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["decode_yolov5", "decode_yolov8", "decode_ssd"]

Candidates = Tuple[np.ndarray, np.ndarray, np.ndarray]


def _xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.empty_like(xywh, dtype=np.float32)
    half_w, half_h = xywh[:, 2] / 2, xywh[:, 3] / 2
    out[:, 0] = xywh[:, 0] - half_w
    out[:, 1] = xywh[:, 1] - half_h
    out[:, 2] = xywh[:, 0] + half_w
    out[:, 3] = xywh[:, 1] + half_h
    result: np.ndarray = out
    return result


def _best_class(class_scores: np.ndarray, threshold: float, boxes: np.ndarray) -> Candidates:
    classes = np.argmax(class_scores, axis=1)
    scores = class_scores[np.arange(len(classes)), classes]
    keep = scores >= threshold
    return boxes[keep], scores[keep].astype(np.float32), classes[keep]


def decode_yolov5(rows: np.ndarray, threshold: float) -> Candidates:
    rows = rows[rows[:, 4] >= threshold]  # objectness bounds every class score
    return _best_class(rows[:, 5:] * rows[:, 4:5], threshold, _xywh_to_xyxy(rows[:, :4]))


def decode_yolov8(columns: np.ndarray, threshold: float) -> Candidates:
    rows = columns.T
    return _best_class(rows[:, 4:], threshold, _xywh_to_xyxy(rows[:, :4]))


def decode_ssd(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, net_hw: Tuple[int, int], background: bool
) -> Candidates:
    if background:
        scores = scores[:, 1:]
    h, w = net_hw
    pixels = boxes.astype(np.float32) * np.array([w, h, w, h], dtype=np.float32)
    found = _best_class(scores, threshold, pixels)
    if background:
        return found[0], found[1], found[2] + 1
    return found
