"""The typed ``format`` section of a model and the backends that can take each format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["FORMATS", "FORMAT_BACKENDS", "ModelFormat", "UffInput", "format_from_section"]

FORMATS = ("onnx", "caffe", "uff", "network-builder")

# Which backends can build each format. Caffe and UFF go through TensorRT's own parsers,
# which exist only in TensorRT 8.x; Caffe also has a CPU road through OpenCV's dnn reader.
# UFF (TensorFlow 1 graphs) has no reader outside TensorRT.
FORMAT_BACKENDS: Dict[str, Tuple[str, ...]] = {
    "onnx": ("onnxruntime", "tensorrt"),
    "caffe": ("opencv", "tensorrt"),
    "uff": ("tensorrt",),
    "network-builder": ("tensorrt",),
}

# The backend a model gets when neither it nor device.defaults names one.
DEFAULT_BACKEND = {"onnx": "onnxruntime", "caffe": "opencv", "uff": "tensorrt", "network-builder": "tensorrt"}


@dataclass(frozen=True)
class UffInput:
    """A UFF graph input: UFF files carry no input shapes, so TensorRT must be told."""

    name: str
    shape: Tuple[int, ...]  # without the batch dimension, e.g. (3, 224, 224)
    order: str  # "nchw" | "nhwc" | "nc"


@dataclass(frozen=True)
class ModelFormat:
    """How to read a model. The model's ``path`` is its main file: the ONNX model, the
    Caffe weights (.caffemodel), the UFF file, or the weights file a builder reads."""

    type: str = "onnx"
    prototxt: Optional[str] = None  # caffe: the network description
    outputs: Tuple[str, ...] = ()  # caffe blob names / uff node names to mark as outputs
    inputs: Tuple[UffInput, ...] = ()  # uff
    builder: Optional[str] = None  # network-builder: "module:function"
    python_path: Optional[str] = None  # network-builder: folder searched first for the module

    def key_document(self) -> Dict[str, Any]:
        """The parts that shape a plan besides file contents (those are hashed apart)."""
        doc: Dict[str, Any] = {"type": self.type}
        if self.outputs:
            doc["outputs"] = list(self.outputs)
        if self.inputs:
            doc["inputs"] = [[i.name, list(i.shape), i.order] for i in self.inputs]
        if self.builder:
            doc["builder"] = self.builder
        return doc


def format_from_section(section: Optional[Mapping[str, Any]]) -> ModelFormat:
    """The typed form of a schema-validated ``format`` section (absent: ONNX)."""
    if not section:
        return ModelFormat()
    return ModelFormat(
        type=section["type"],
        prototxt=section.get("prototxt"),
        outputs=tuple(section.get("outputs", ())),
        inputs=tuple(
            UffInput(name=i["name"], shape=tuple(int(d) for d in i["shape"]), order=i.get("order", "nchw"))
            for i in section.get("inputs", ())
        ),
        builder=section.get("builder"),
        python_path=section.get("python_path"),
    )
