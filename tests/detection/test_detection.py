from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from edged.config import parse_config
from edged.daemon import Daemon
from edged.pipeline.detection.decode import decode_ssd, decode_yolov5, decode_yolov8
from edged.pipeline.detection.geometry import letterbox_for
from edged.pipeline.detection.nms import nms


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, threshold: float) -> List[int]:
    """The textbook definition, one pair at a time, per class."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept: List[int] = []
    for i in order:
        if all(classes[i] != classes[k] or iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 200, size=(n, 2))
    wh = rng.uniform(1, 80, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def test_nms_matches_brute_force_on_random_inputs() -> None:
    rng = np.random.default_rng(2024)
    for _ in range(3000):
        n = int(rng.integers(0, 40))
        boxes = random_boxes(rng, n)
        scores = rng.permutation(n).astype(np.float32) / max(n, 1)  # distinct scores: one right order
        classes = rng.integers(0, 3, size=n)
        threshold = float(rng.uniform(0.1, 0.9))
        assert nms(boxes, scores, classes, threshold).tolist() == brute_force_nms(boxes, scores, classes, threshold)


def reference_decode(
    rows: List[Tuple[float, ...]], threshold: float, objectness: bool
) -> List[Tuple[int, float, Tuple[float, ...]]]:
    found = []
    for row in rows:
        cx, cy, w, h = row[:4]
        probs = row[5:] if objectness else row[4:]
        scores = [p * row[4] for p in probs] if objectness else list(probs)
        cls = max(range(len(scores)), key=lambda c: scores[c])
        if scores[cls] >= threshold:
            found.append((cls, scores[cls], (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    return found


@pytest.mark.parametrize("layout", ["yolov5", "yolov8"])
def test_yolo_decoding_matches_a_row_by_row_reference(layout: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(500):
        anchors, classes = int(rng.integers(1, 50)), int(rng.integers(1, 6))
        extra = 5 if layout == "yolov5" else 4
        rows = rng.uniform(0, 1, size=(anchors, extra + classes)).astype(np.float32)
        rows[:, :4] *= 300
        threshold = float(rng.uniform(0.05, 0.9))
        if layout == "yolov5":
            boxes, scores, cls = decode_yolov5(rows, threshold)
        else:
            boxes, scores, cls = decode_yolov8(rows.T.copy(), threshold)
        expected = reference_decode([tuple(map(float, r)) for r in rows], threshold, layout == "yolov5")
        assert cls.tolist() == [e[0] for e in expected]
        np.testing.assert_allclose(scores, [e[1] for e in expected], rtol=1e-6)
        np.testing.assert_allclose(
            boxes.reshape(-1, 4), np.array([e[2] for e in expected]).reshape(-1, 4), rtol=1e-5, atol=1e-3
        )


def test_ssd_decoding_skips_the_background_class() -> None:
    boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    scores = np.array([[0.1, 0.8, 0.1], [0.9, 0.05, 0.05]], dtype=np.float32)
    found_boxes, found_scores, found_classes = decode_ssd(boxes, scores, 0.3, (100, 200), background=True)
    assert found_classes.tolist() == [1] and found_scores.tolist() == pytest.approx([0.8])
    np.testing.assert_allclose(found_boxes, [[20, 20, 100, 60]])


def test_letterbox_round_trip_is_within_one_pixel() -> None:
    rng = np.random.default_rng(5)
    for _ in range(1000):
        src = (int(rng.integers(50, 1500)), int(rng.integers(50, 2000)))
        net = (int(rng.choice([320, 416, 640])), int(rng.choice([320, 416, 640])))
        transform, _ = letterbox_for(src, net)
        box = random_boxes(rng, 1)
        box[:, [0, 2]] = np.clip(box[:, [0, 2]] / 280 * src[1], 0, src[1])
        box[:, [1, 3]] = np.clip(box[:, [1, 3]] / 280 * src[0], 0, src[0])
        back = transform.to_source(transform.to_network(box))
        assert np.abs(back - box).max() <= 1.0


def _constant_detector(path: Path, detections: np.ndarray) -> None:
    """An ONNX model whose yolov8-layout output is constant (the input only sets the batch)."""
    from onnx import TensorProto, helper, numpy_helper

    const = numpy_helper.from_array(detections[None].astype(np.float32), "dets")
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "tail"], ["target"], axis=0),
        helper.make_node("Expand", ["dets", "target"], ["output0"]),
    ]
    inits = [
        const,
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array(detections.shape, np.int64), "tail"),
    ]
    graph = helper.make_graph(
        nodes,
        "constant-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 320, 320])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", *detections.shape])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    path.write_bytes(model.SerializeToString())


def test_detections_reach_the_sink_in_source_pixels(tmp_path: Path) -> None:
    # Two boxes of class 1 overlapping (one suppressed) and one of class 0, in network pixels
    # of a 320x320 letterboxed input fed by 160x240 (h x w) frames: scale 4/3, pad_y 53.
    cx, cy, w, h = [100.0, 104.0, 250.0], [160.0, 162.0, 100.0], [40.0, 40.0, 20.0], [60.0, 60.0, 20.0]
    scores = [[0.0, 0.0, 0.7], [0.9, 0.8, 0.0]]
    detector = tmp_path / "det.onnx"
    _constant_detector(detector, np.array([cx, cy, w, h, *scores], dtype=np.float32))
    labels = tmp_path / "labels.txt"
    labels.write_text("person\ncar\n")
    doc: Dict[str, Any] = {
        "device": {"id": "d"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "models": [
            {
                "name": "det",
                "path": str(detector),
                "source": {"type": "synthetic", "fps": 0, "count": 3, "size": [160, 240]},
                "preprocess": {"letterbox": True},
                "postprocess": {"type": "detect", "format": "yolov8", "labels": str(labels)},
                "sink": {"type": "jsonl", "path": str(tmp_path / "det.jsonl")},
            }
        ],
    }
    Daemon(parse_config(doc)).run(duration_s=30)
    records = [json.loads(line) for line in (tmp_path / "det.jsonl").read_text().splitlines()]
    assert len(records) == 3
    scale, pad_y = 320 / 240, (320 - 213) // 2
    for record in records:
        found = {(d["label"], d["score"]): d["box"] for d in record["detections"]}
        assert set(found) == {("car", 0.9), ("person", 0.7)}
        expected_car = [(100 - 20) / scale, (160 - 30 - pad_y) / scale, (100 + 20) / scale, (160 + 30 - pad_y) / scale]
        assert found[("car", 0.9)] == pytest.approx(expected_car, abs=1.0)
