"""The gate's comparison figures: per-tensor errors, classify agreement, and detection box
matching through the pipeline's own YOLO and SSD decoders."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from edged.accuracy.metrics import Comparison
from edged.accuracy.settings import DEFAULT_THRESHOLDS
from edged.accuracy.verdict import judge
from edged.backends.base import TensorSpec
from edged.config import parse_config
from edged.config.model import ModelConfig

NET_HW = (64, 64)
Box = Tuple[float, float, float, float]


def _model(postprocess: Dict[str, Any]) -> ModelConfig:
    doc = {
        "device": {"id": "m"},
        "plans": {"cache_dir": "/tmp/unused"},
        "models": [{"name": "m", "path": "/unused.onnx", "postprocess": postprocess}],
    }
    return parse_config(doc).models[0]


def _yolov8(boxes: List[Tuple[Box, int, float]], classes: int = 3, anchors: int = 20) -> np.ndarray:
    """One frame's yolov8 output [4 + classes, anchors]: cx, cy, w, h then class scores."""
    out = np.zeros((4 + classes, anchors), dtype=np.float32)
    for i, ((x1, y1, x2, y2), cls, score) in enumerate(boxes):
        out[:4, i] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        out[4 + cls, i] = score
    return out


def _ssd(boxes: List[Tuple[Box, int, float]], classes: int = 3, anchors: int = 20) -> Dict[str, np.ndarray]:
    b = np.zeros((anchors, 4), dtype=np.float32)
    s = np.zeros((anchors, classes), dtype=np.float32)
    for i, ((x1, y1, x2, y2), cls, score) in enumerate(boxes):
        b[i] = np.array([x1, y1, x2, y2]) / 64.0
        s[i, cls] = score
    return {"boxes": b[None], "scores": s[None]}


REFERENCE = [((4, 4, 24, 24), 0, 0.9), ((30, 30, 60, 60), 1, 0.8), ((5, 40, 20, 60), 2, 0.7)]


def _figures(fmt: str, got: List[Tuple[Box, int, float]]) -> Dict[str, Any]:
    if fmt == "ssd":
        model = _model({"type": "detect", "format": "ssd"})
        specs = [TensorSpec("boxes", (1, 20, 4), "float32"), TensorSpec("scores", (1, 20, 3), "float32")]
        ref, out = _ssd(REFERENCE), _ssd(got)
    else:
        model = _model({"type": "detect", "format": "yolov8"})
        specs = [TensorSpec("y", (1, 7, 20), "float32")]
        ref, out = {"y": _yolov8(REFERENCE)[None]}, {"y": _yolov8(got)[None]}
    comparison = Comparison(model, specs, NET_HW)
    comparison.add(ref, out)
    return comparison.figures()


@pytest.mark.parametrize("fmt", ["yolov8", "ssd"])
def test_boxes_are_matched_by_class_and_overlap(fmt: str) -> None:
    jittered = [((x1 + 1, y1 - 1, x2 + 1, y2), c, s - 0.05) for (x1, y1, x2, y2), c, s in REFERENCE]
    same = _figures(fmt, jittered)
    assert same["box_precision"] == 1.0 and same["box_recall"] == 1.0 and same["reference_boxes"] == 3
    assert judge(same, DEFAULT_THRESHOLDS["int8"]) == []

    missing_one = _figures(fmt, jittered[:2])
    assert missing_one["box_precision"] == 1.0 and missing_one["box_recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert any("box recall" in f for f in judge(missing_one, DEFAULT_THRESHOLDS["int8"]))

    # Right place, wrong class; and right class, a box that overlaps too little (IoU 0.33).
    wrong = [(REFERENCE[0][0], 2, 0.9), ((4, 14, 24, 34), 1, 0.8), REFERENCE[2]]
    figures = _figures(fmt, wrong)
    assert figures["box_precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert figures["box_recall"] == pytest.approx(1 / 3, abs=1e-4)
    failures = judge(figures, DEFAULT_THRESHOLDS["fp16"])
    assert any("box precision" in f for f in failures) and any("box recall" in f for f in failures)


def test_tensor_errors_and_classify_agreement() -> None:
    model = _model({"type": "classify"})
    specs = [TensorSpec("logits", (None, 4), "float32")]
    ref = np.array([[4.0, 1.0, 0.0, 0.0], [0.0, 3.0, 1.0, 0.0]], dtype=np.float32)
    got = np.array([[4.0, 1.5, 0.0, 0.0], [0.0, 1.0, 3.0, 0.0]], dtype=np.float32)
    comparison = Comparison(model, specs, NET_HW)
    comparison.add({"logits": ref}, {"logits": got})
    figures = comparison.figures()
    assert figures["top1_agreement"] == 0.5
    assert figures["top5_overlap"] == 1.0  # 4 classes: every class is in both top-4s
    tensor = figures["outputs"]["logits"]
    assert tensor["max_abs_error"] == 2.0 and tensor["mean_abs_error"] == pytest.approx(4.5 / 8)
    assert tensor["max_rel_error"] == 2.0  # |3 - 1| / 1
    cos0 = float(ref[0] @ got[0] / np.linalg.norm(ref[0]) / np.linalg.norm(got[0]))
    assert tensor["cosine_min"] == pytest.approx(0.6, abs=1e-6)  # (0,3,1,0) against (0,1,3,0)
    assert tensor["cosine_mean"] == pytest.approx((cos0 + 0.6) / 2, abs=1e-6)
    failures = judge(figures, DEFAULT_THRESHOLDS["int8"])
    assert failures == ["top-1 agreement 0.5 < 0.97 (min_top1_agreement)"]


def test_raw_models_are_judged_on_cosine_and_on_max_abs_error_when_set() -> None:
    model = _model({"type": "raw"})
    comparison = Comparison(model, [TensorSpec("y", (None, 3), "float32")], NET_HW)
    comparison.add({"y": np.array([[1.0, 2.0, 3.0]])}, {"y": np.array([[1.0, 2.0, 3.1]])})
    figures = comparison.figures()
    assert judge(figures, DEFAULT_THRESHOLDS["int8"]) == []
    strict = DEFAULT_THRESHOLDS["int8"].__class__(**{**DEFAULT_THRESHOLDS["int8"].as_dict(), "max_abs_error": 0.05})
    assert judge(figures, strict) == ["output y: max abs error 0.1 > 0.05 (max_abs_error)"]
    flipped = Comparison(model, [TensorSpec("y", (None, 3), "float32")], NET_HW)
    flipped.add({"y": np.array([[1.0, 2.0, 3.0]])}, {"y": np.array([[3.0, 2.0, 1.0]])})
    assert any("cosine similarity" in f for f in judge(flipped.figures(), DEFAULT_THRESHOLDS["fp16"]))
