"""The trained digits classifier and its image folders, made once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from tests.accuracy.digits import Digits, black, preprocess, train_digits, write_images


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    return train_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def digit_folders(digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """good: 100 training digits; black: 20 all-black images; held_out: 200 test digits."""
    root = tmp_path_factory.mktemp("digit-images")
    return {
        "good": write_images(root / "good", digits.train[:100]),
        "black": write_images(root / "black", np.stack(black(20))),
        "held_out": write_images(root / "held_out", digits.test[:200]),
    }


def digits_config(digits: Digits, folders: Dict[str, Path], tmp_path: Path, **model: Any) -> Dict[str, Any]:
    """The digits model on ONNX Runtime, classifying the held-out digits from an images source."""
    entry: Dict[str, Any] = {
        "name": "digits",
        "path": str(digits.model),
        "backend": "onnxruntime",
        "threads": 1,
        "batch": 8,
        "preprocess": preprocess(),
        "source": {"type": "images", "path": str(folders["held_out"]), "loop": False},
        "postprocess": {"type": "classify", "top_k": 3},
        "sink": {"type": "jsonl", "path": str(tmp_path / "digits.jsonl")},
    }
    entry.update(model)
    return {"device": {"id": "gate"}, "plans": {"cache_dir": str(tmp_path / "plans")}, "models": [entry]}
