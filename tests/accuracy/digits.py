"""A real classifier for the accuracy gate's tests: scikit-learn's handwritten digits (1,797
8x8 images, 10 classes, shipped inside scikit-learn), a two-layer perceptron trained here
with scikit-learn and written to ONNX with onnx's helper API.

The network sees frames as the pipeline makes them: an 8x8 BGR image (the digit's grey
level in all three channels), scaled to 0..1, NCHW.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np

__all__ = ["Digits", "train_digits", "write_images", "preprocess"]

SEED = 0
HIDDEN = 32


@dataclass(frozen=True)
class Digits:
    model: Path
    train: np.ndarray  # uint8 [n, 8, 8] grey images
    test: np.ndarray
    test_labels: np.ndarray
    test_accuracy: float  # of the FP32 model, measured by scikit-learn on ``test``


def _grey(images: np.ndarray) -> np.ndarray:
    # The dataset's levels are 0..16.
    return np.clip(images * 16.0, 0, 255).astype(np.uint8)


def _features(grey: np.ndarray) -> np.ndarray:
    """What the network's Flatten sees: 3 identical channels, scaled to 0..1."""
    return np.repeat(grey[:, None, :, :], 3, axis=1).reshape(len(grey), -1).astype(np.float32) / 255.0


def train_digits(out: Path) -> Digits:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    data = load_digits()
    grey = _grey(data.images)
    train, test, y_train, y_test = train_test_split(grey, data.target, test_size=0.25, random_state=SEED)
    mlp = MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=400, random_state=SEED)
    mlp.fit(_features(train), y_train)
    accuracy = float(mlp.score(_features(test), y_test))
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    inits = [
        numpy_helper.from_array(w1.astype(np.float32), "fc1.w"),
        numpy_helper.from_array(b1.astype(np.float32), "fc1.b"),
        numpy_helper.from_array(w2.astype(np.float32), "fc2.w"),
        numpy_helper.from_array(b2.astype(np.float32), "fc2.b"),
    ]
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc1.w", "fc1.b"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "fc2.w", "fc2.b"], ["logits"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "digits-mlp",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "digits.onnx"
    onnx.save(model, str(path))
    return Digits(path, train, test, y_test, accuracy)


def write_images(folder: Path, grey: np.ndarray) -> Path:
    """``grey`` images as PNG files (grey = equal B, G, R)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(grey):
        Image.fromarray(image, mode="L").convert("RGB").save(folder / f"{index:04d}.png")
    return folder


def preprocess() -> dict:  # type: ignore[type-arg]
    return {"size": [8, 8], "scale": 1.0 / 255.0, "layout": "nchw"}


def black(count: int) -> List[np.ndarray]:
    return [np.zeros((8, 8), dtype=np.uint8) for _ in range(count)]
