"""A folder of JPEG/PNG images, once or looping."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from edged.config.model import PluginConfig
from edged.errors import SourceError
from edged.pipeline.frame import Frame
from edged.pipeline.sources.base import Source
from edged.pipeline.sources.pacing import Pacer

__all__ = ["ImageFolderSource", "decode_image", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Decoded images are kept when they fit, so a looping folder costs no decoding after the first pass.
_CACHE_LIMIT_BYTES = 256 << 20


def decode_image(path: Path) -> np.ndarray:
    """An image file as HWC uint8 BGR."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise SourceError("the images source needs Pillow: apt install python3-pil or pip install pillow") from exc
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot decode image: {exc}") from exc
    bgr: np.ndarray = np.ascontiguousarray(rgb[:, :, ::-1])
    return bgr


class ImageFolderSource(Source):
    def __init__(self, config: PluginConfig, frame_hw: Tuple[int, int]) -> None:
        super().__init__(config, frame_hw)
        self.folder = Path(config.get("path"))
        self.loop = bool(config.get("loop", True))
        self.fps = float(config.get("fps", 0))
        self.live = False
        self._files: List[Path] = []
        self._cache: List[Optional[np.ndarray]] = []
        self._cached_bytes = 0
        self._pacer = Pacer(self.fps)

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: not a readable folder")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"{self.folder}: no {'/'.join(IMAGE_SUFFIXES)} images")
        self._cache = [None] * len(self._files)

    def read(self, stop: threading.Event) -> Optional[Frame]:
        if not self._files:
            raise SourceError("images source read before open()")
        index = self._seq % len(self._files)
        if self._seq >= len(self._files) and not self.loop:
            return None
        if not self._pacer.wait(stop):
            return None
        image = self._cache[index]
        if image is None:
            image = decode_image(self._files[index])
            if self._cached_bytes + image.nbytes <= _CACHE_LIMIT_BYTES:
                image.setflags(write=False)
                self._cache[index] = image
                self._cached_bytes += image.nbytes
        seq = self._next_seq()
        return Frame(seq, image, time.monotonic(), origin=self._files[index].name)
