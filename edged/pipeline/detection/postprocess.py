"""The ``detect`` post-processor: decode, threshold, class-aware NMS, boxes in source pixels."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from edged.backends.base import TensorSpec
from edged.config.model import PluginConfig
from edged.errors import ConfigError
from edged.pipeline.detection.decode import decode_ssd, decode_yolov5, decode_yolov8
from edged.pipeline.detection.geometry import Letterbox, stretch_for
from edged.pipeline.detection.nms import nms
from edged.pipeline.frame import Frame

__all__ = ["DetectPostprocessor"]


class DetectPostprocessor:
    def __init__(
        self, config: PluginConfig, outputs: Sequence[TensorSpec], net_hw: Tuple[int, int], labels: Optional[List[str]]
    ) -> None:
        self.format = config.get("format", "yolov8")
        self.threshold = float(config.get("conf_threshold", 0.25))
        self.iou = float(config.get("iou_threshold", 0.45))
        self.max_detections = int(config.get("max_detections", 100))
        self.background = bool(config.get("background", False))
        self.net_hw = net_hw
        self.labels = labels
        names = [spec.name for spec in outputs]
        if self.format == "ssd":
            self.boxes_output = config.get("boxes_output") or names[0]
            self.scores_output = config.get("scores_output") or (names[1] if len(names) > 1 else "")
            for key, name in (("boxes_output", self.boxes_output), ("scores_output", self.scores_output)):
                if name not in names:
                    raise ConfigError(f"postprocess.{key}: {name!r} is not a model output ({', '.join(names)})")
        else:
            self.output = config.get("output") or names[0]
            if self.output not in names:
                raise ConfigError(f"postprocess.output: {self.output!r} is not a model output ({', '.join(names)})")

    def _candidates(self, outputs: Mapping[str, np.ndarray], index: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.format == "ssd":
            boxes = np.asarray(outputs[self.boxes_output][index], dtype=np.float32)
            scores = np.asarray(outputs[self.scores_output][index], dtype=np.float32)
            return decode_ssd(boxes, scores, self.threshold, self.net_hw, self.background)
        raw = np.asarray(outputs[self.output][index], dtype=np.float32)
        if self.format == "yolov5":
            return decode_yolov5(raw, self.threshold)
        return decode_yolov8(raw, self.threshold)

    def __call__(self, outputs: Mapping[str, np.ndarray], index: int, frame: Optional[Frame] = None) -> Dict[str, Any]:
        boxes, scores, classes = self._candidates(outputs, index)
        keep = nms(boxes, scores, classes, self.iou, self.max_detections)
        transform: Optional[Letterbox] = frame.meta.get("letterbox") if frame is not None else None
        if transform is None and frame is not None:
            transform = stretch_for(frame.image.shape[:2], self.net_hw)
        kept = boxes[keep]
        if transform is not None:
            kept = transform.to_source(kept)
        detections = []
        for box, score, cls in zip(kept.tolist(), scores[keep].tolist(), classes[keep].tolist()):
            entry: Dict[str, Any] = {
                "class": int(cls),
                "score": round(float(score), 5),
                "box": [round(v, 1) for v in box],
            }
            if self.labels is not None and 0 <= cls < len(self.labels):
                entry["label"] = self.labels[cls]
            detections.append(entry)
        return {"detections": detections}
