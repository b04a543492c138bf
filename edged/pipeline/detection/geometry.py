"""Letterbox geometry: fit a frame into the network input keeping its aspect ratio, and back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

__all__ = ["Letterbox", "letterbox_for", "stretch_for"]


@dataclass(frozen=True)
class Letterbox:
    """Network coordinates = source coordinates * scale + pad (per axis)."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """x1, y1, x2, y2 boxes in network pixels -> source pixels, clipped to the frame."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, [0, 2]] = (boxes[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (boxes[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, self.src_w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, self.src_h)
        result: np.ndarray = out
        return result

    def to_network(self, boxes: np.ndarray) -> np.ndarray:
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, [0, 2]] = boxes[:, [0, 2]] * self.scale_x + self.pad_x
        out[:, [1, 3]] = boxes[:, [1, 3]] * self.scale_y + self.pad_y
        result: np.ndarray = out
        return result


def letterbox_for(src_hw: Tuple[int, int], net_hw: Tuple[int, int]) -> Tuple[Letterbox, Tuple[int, int]]:
    """The transform and the resized (h, w) for a centred letterbox, as YOLO exporters use."""
    src_h, src_w = src_hw
    net_h, net_w = net_hw
    scale = min(net_h / src_h, net_w / src_w)
    new_h, new_w = max(1, round(src_h * scale)), max(1, round(src_w * scale))
    pad_x, pad_y = (net_w - new_w) // 2, (net_h - new_h) // 2
    # The effective scale of each axis after rounding the resized size.
    return Letterbox(new_w / src_w, new_h / src_h, pad_x, pad_y, src_w, src_h), (new_h, new_w)


def stretch_for(src_hw: Tuple[int, int], net_hw: Tuple[int, int]) -> Letterbox:
    """The transform of a plain resize (no padding, aspect ratio not kept)."""
    return Letterbox(net_hw[1] / src_hw[1], net_hw[0] / src_hw[0], 0.0, 0.0, src_hw[1], src_hw[0])
