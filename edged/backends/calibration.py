"""Calibration images to network-input batches, shared by TensorRT's INT8 calibrator and
ONNX Runtime's static quantisation, so both see exactly what inference will see."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import numpy as np

from edged.backends.base import BuildOptions, TensorSpec
from edged.config.model import PreprocessConfig
from edged.errors import BackendError

__all__ = ["CalibrationSet", "calibration_set"]

_DEFAULT_PREPROCESS: Dict[str, Any] = {
    "size": None,
    "color": "rgb",
    "scale": 1.0 / 255.0,
    "mean": (0.0, 0.0, 0.0),
    "std": (1.0, 1.0, 1.0),
    "layout": "nchw",
    "dtype": None,
    "resize": "bilinear",
}


class CalibrationSet:
    """A sorted folder of JPEG/PNG images, preprocessed like the model's frames."""

    def __init__(self, folder: str, preprocess: Mapping[str, Any], max_images: int = 0) -> None:
        from edged.pipeline.sources.images import IMAGE_SUFFIXES

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BackendError(f"calibration.images: {folder} is not a folder")
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if max_images:
            files = files[:max_images]
        if not files:
            raise BackendError(f"calibration.images: no JPEG/PNG images in {folder}")
        self.files: List[Path] = files
        merged: Dict[str, Any] = dict(_DEFAULT_PREPROCESS)
        merged.update({k: v for k, v in preprocess.items() if k in merged})
        size = merged["size"]
        self.preprocess = PreprocessConfig(
            size=(int(size[0]), int(size[1])) if size else None,
            color=str(merged["color"]),
            scale=float(merged["scale"]),
            mean=tuple(float(v) for v in merged["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in merged["std"]),  # type: ignore[arg-type]
            layout=str(merged["layout"]),
            dtype=merged["dtype"],
            resize=str(merged["resize"]),
        )

    def digest(self) -> str:
        """Changes when an image or the preprocessing changes: names the calibration cache."""
        h = hashlib.sha256(repr(self.preprocess).encode())
        for path in self.files:
            h.update(path.name.encode())
            h.update(path.read_bytes())
        return h.hexdigest()[:16]

    def batches(self, spec: TensorSpec, batch: int) -> Iterator[np.ndarray]:
        """Batches of ``batch`` samples for input ``spec``; the last one is padded by
        repeating images so every batch has the profile's shape."""
        from edged.pipeline.preprocess import Preprocessor
        from edged.pipeline.sources.images import decode_image

        pre = Preprocessor(self.preprocess, spec)
        dtype = np.float16 if spec.dtype == "float16" else pre.dtype
        for start in range(0, len(self.files), batch):
            chunk = self.files[start : start + batch]
            chunk = chunk + [self.files[i % len(self.files)] for i in range(batch - len(chunk))]
            samples = [pre(decode_image(path)) for path in chunk]
            yield np.ascontiguousarray(np.stack(samples), dtype=dtype)


def calibration_set(options: BuildOptions) -> Optional[CalibrationSet]:
    folder = options.extra.get("calibration_images")
    if not folder:
        return None
    return CalibrationSet(
        str(folder), options.extra.get("preprocess") or {}, int(options.extra.get("calibration_max_images", 0))
    )
