"""A folder of JPEG/PNG images, once or looping.

A file that cannot become a frame (empty, truncated, not an image, or too large to decode
safely) is skipped with a counted drop reason and leaves the rotation; the source goes on
with the others and fails only when no decodable image is left.
"""

from __future__ import annotations

import logging
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

__all__ = ["ImageFolderSource", "BadImage", "decode_image", "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Decoded images are kept when they fit, so a looping folder costs no decoding after the first pass.
_CACHE_LIMIT_BYTES = 256 << 20
# The largest frame the config schema allows for any source (8192 x 8192); checked from
# the header before decoding, so a small file declaring a huge canvas costs nothing.
MAX_IMAGE_PIXELS = 8192 * 8192


class BadImage(SourceError):
    """One image file that cannot become a frame; ``reason`` is its drop counter name."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def decode_image(path: Path) -> np.ndarray:
    """An image file as HWC uint8 BGR; raises BadImage naming the file and the reason."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise SourceError("the images source needs Pillow: apt install python3-pil or pip install pillow") from exc
    try:
        if path.stat().st_size == 0:
            raise BadImage("image_empty", f"{path}: empty file")
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise BadImage("image_too_large", f"{path}: {width}x{height} exceeds {MAX_IMAGE_PIXELS} pixels")
            rgb = np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as exc:
        # Image.open raises it beyond twice Image.MAX_IMAGE_PIXELS (Pillow docs, reference/Image,
        # "Image.open" and "MAX_IMAGE_PIXELS").
        raise BadImage("image_too_large", f"{path}: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        # Truncated data and non-image files surface as OSError (UnidentifiedImageError is
        # one); some corrupt headers as ValueError or SyntaxError (Pillow's PNG chunk reader).
        raise BadImage("image_undecodable", f"{path}: cannot decode image: {exc}") from exc
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
        self._opened = False
        self._position = 0  # index of the next file in the rotation
        self._passes = 0  # completed passes over the folder

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: not a readable folder")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"{self.folder}: no {'/'.join(IMAGE_SUFFIXES)} images")
        self._cache = [None] * len(self._files)
        self._opened = True

    def read(self, stop: threading.Event) -> Optional[Frame]:
        if not self._opened:
            raise SourceError("images source read before open()")
        while True:
            if not self._files:
                raise SourceError(f"{self.folder}: no decodable images left")
            if self._position >= len(self._files):
                self._position = 0
                self._passes += 1
            if self._passes > 0 and not self.loop:
                return None
            index = self._position
            image = self._cache[index]
            if image is None:
                try:
                    image = decode_image(self._files[index])
                except BadImage as exc:
                    log.warning("images source: skipping %s", exc)
                    self.skipped(exc.reason)
                    del self._files[index]
                    del self._cache[index]
                    continue
                if self._cached_bytes + image.nbytes <= _CACHE_LIMIT_BYTES:
                    image.setflags(write=False)
                    self._cache[index] = image
                    self._cached_bytes += image.nbytes
            if not self._pacer.wait(stop):
                return None
            self._position += 1
            seq = self._next_seq()
            return Frame(seq, image, time.monotonic(), origin=self._files[index].name)
