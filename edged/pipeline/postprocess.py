"""Output tensors of one frame to a JSON-ready result."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from edged.backends.base import TensorSpec
from edged.config.model import PluginConfig
from edged.errors import ConfigError
from edged.pipeline.frame import Frame

if TYPE_CHECKING:
    from edged.pipeline.detection.postprocess import DetectPostprocessor

__all__ = ["Postprocessor", "ClassifyPostprocessor", "RawPostprocessor", "create_postprocessor"]


class Postprocessor(abc.ABC):
    @abc.abstractmethod
    def __call__(self, outputs: Mapping[str, np.ndarray], index: int, frame: Optional[Frame] = None) -> Dict[str, Any]:
        """Result for frame ``index`` of the batch whose ``outputs`` are given."""


class RawPostprocessor(Postprocessor):
    """Every output tensor of the frame, as nested lists (exact float32 values)."""

    def __call__(self, outputs: Mapping[str, np.ndarray], index: int, frame: Optional[Frame] = None) -> Dict[str, Any]:
        return {"outputs": {name: value[index].tolist() for name, value in outputs.items()}}


def _read_labels(path: str) -> List[str]:
    try:
        return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise ConfigError(f"postprocess.labels: cannot read {path!r}: {exc.strerror}") from exc


class ClassifyPostprocessor(Postprocessor):
    """Top-k classes with scores (optionally softmaxed) and labels."""

    def __init__(self, config: PluginConfig, outputs: Sequence[TensorSpec]) -> None:
        names = [spec.name for spec in outputs]
        self.output = config.get("output") or names[0]
        if self.output not in names:
            raise ConfigError(f"postprocess.output: {self.output!r} is not a model output ({', '.join(names)})")
        self.top_k = int(config.get("top_k", 5))
        self.softmax = bool(config.get("softmax", False))
        labels = config.get("labels")
        self.labels: Optional[List[str]] = _read_labels(labels) if labels else None

    def __call__(self, outputs: Mapping[str, np.ndarray], index: int, frame: Optional[Frame] = None) -> Dict[str, Any]:
        scores = np.asarray(outputs[self.output][index], dtype=np.float32).reshape(-1)
        if self.softmax:
            shifted = np.exp(scores - scores.max())
            scores = shifted / shifted.sum()
        k = min(self.top_k, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        classes = []
        for cls in top.tolist():
            entry: Dict[str, Any] = {"class": cls, "score": float(scores[cls])}
            if self.labels is not None and cls < len(self.labels):
                entry["label"] = self.labels[cls]
            classes.append(entry)
        return {"top_k": classes}


def create_postprocessor(
    config: PluginConfig, outputs: Sequence[TensorSpec], net_hw: Tuple[int, int] = (0, 0)
) -> Union[Postprocessor, "DetectPostprocessor"]:
    if config.type == "classify":
        return ClassifyPostprocessor(config, outputs)
    if config.type == "raw":
        return RawPostprocessor()
    if config.type == "detect":
        from edged.pipeline.detection.postprocess import DetectPostprocessor

        labels = config.get("labels")
        return DetectPostprocessor(config, outputs, net_hw, _read_labels(labels) if labels else None)
    raise ConfigError(f"postprocess.type: {config.type!r} is not one of classify, detect, raw")
