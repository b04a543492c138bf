"""A real classifier for the accuracy gate's tests: scikit-learn's handwritten digits (1,797
8x8 images, 10 classes, shipped inside scikit-learn), a two-layer perceptron trained here
with scikit-learn and written to ONNX with onnx's helper API.

The network sees frames as the pipeline makes them: an 8x8 BGR image (the digit's grey
level in all three channels), scaled to 0..1, NCHW.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List

import numpy as np

__all__ = ["Digits", "train_digits", "write_images", "preprocess"]

SEED = 0
HIDDEN = 32


@dataclass(frozen=True)
class Digits:
    model: Path  # Flatten, Gemm, Relu, Gemm
    conv_model: Path  # the same weights as 8x8 and 1x1 convolutions: layers a DLA runs
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
    from onnx import helper
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
    out.mkdir(parents=True, exist_ok=True)
    dense = [
        helper.make_node("Flatten", ["image"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc1.w", "fc1.b"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "fc2.w", "fc2.b"], ["logits"], name="fc2"),
    ]
    _save(out / "digits.onnx", dense, [w1, b1, w2, b2])
    # Flatten's NCHW order is (c, h, w), so fc1's columns are 8x8 kernels over 3 channels.
    conv = [
        helper.make_node("Conv", ["image", "fc1.w", "fc1.b"], ["h"], name="conv1", kernel_shape=[8, 8]),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "fc2.w", "fc2.b"], ["c"], name="conv2", kernel_shape=[1, 1]),
        helper.make_node("Flatten", ["c"], ["logits"], name="flatten"),
    ]
    kernels = [w1.T.reshape(HIDDEN, 3, 8, 8), b1, w2.T.reshape(10, HIDDEN, 1, 1), b2]
    _save(out / "digits-conv.onnx", conv, kernels)
    return Digits(out / "digits.onnx", out / "digits-conv.onnx", train, test, y_test, accuracy)


def _save(path: Path, nodes: List[Any], weights: List[np.ndarray]) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = ["fc1.w", "fc1.b", "fc2.w", "fc2.b"]
    graph = helper.make_graph(
        nodes,
        "digits-mlp",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), n) for n, w in zip(names, weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


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
