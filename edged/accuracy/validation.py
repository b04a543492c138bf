"""The frames a plan is checked on, in order of preference:

1. a folder of validation images (``accuracy.images``), when configured;
2. the model's calibration images (``calibration.images``);
3. frames captured from the model's own source, at most ``accuracy.capture_s`` seconds and
   ``accuracy.max_images`` frames, kept under the plan cache (``validation/<model>-<source
   digest>/``, within ``accuracy.capture_max_mb``) so later checks reuse them;
4. seeded random frames, and the result then says plainly that the data was synthetic.

A configured validation folder comes first because it is the only evidence against a poor
calibration set: an INT8 plan judged on the very images it was calibrated on agrees with
the reference there even when those images are nothing like the real input (all black,
say), and fails on the camera. Frames are HWC uint8 BGR, like a source's, so the check preprocesses them exactly as
serving does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from edged.accuracy.settings import AccuracySettings
from edged.config.model import ModelConfig
from edged.errors import EdgedError

__all__ = ["ValidationSet", "select_validation", "capture_folder"]

log = logging.getLogger(__name__)

_SYNTHETIC_SEED = 23


@dataclass(frozen=True)
class ValidationSet:
    source: str  # calibration | folder | captured | synthetic
    description: str  # for people: what the frames are, and why these
    frames: List[np.ndarray]
    digest: str  # changes when any frame does; a cached verdict is valid for one digest


def _digest(frames: List[np.ndarray]) -> str:
    h = hashlib.sha256()
    for frame in frames:
        h.update(repr(frame.shape).encode())
        h.update(np.ascontiguousarray(frame).tobytes())
    return h.hexdigest()[:16]


def _image_folder(folder: str, limit: int, key: str) -> List[np.ndarray]:
    from edged.pipeline.sources.images import IMAGE_SUFFIXES, decode_image

    path = Path(folder)
    if not path.is_dir():
        raise EdgedError(f"{key}: {folder} is not a folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise EdgedError(f"{key}: no JPEG/PNG images in {folder}")
    return [decode_image(p) for p in files]


def capture_folder(model: ModelConfig, cache_dir: str) -> Path:
    """Where frames captured from ``model``'s source are kept: a new source, a new folder."""
    source = json.dumps({"type": model.source.type, **dict(model.source.params)}, sort_keys=True, default=str)
    return Path(cache_dir, "validation", f"{model.name}-{hashlib.sha256(source.encode()).hexdigest()[:12]}")


def _stored_frames(folder: Path, limit: int) -> List[np.ndarray]:
    if not folder.is_dir():
        return []
    frames = []
    for path in sorted(folder.glob("frame-*.npy"))[:limit]:
        with contextlib.suppress(OSError, ValueError):
            frames.append(np.load(path, allow_pickle=False))
    return frames


def _fit(image: np.ndarray, net_hw: Tuple[int, int]) -> np.ndarray:
    """``image`` shrunk (aspect ratio kept) to fit the network input: the check sees what
    preprocessing would make of the full frame, and the disk holds a fraction of it."""
    from edged.pipeline.preprocess import resize

    scale = min(net_hw[0] / image.shape[0], net_hw[1] / image.shape[1], 1.0)
    if scale >= 1.0:
        return image
    return resize(image, (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))))


def _capture(model: ModelConfig, settings: AccuracySettings, folder: Path, net_hw: Tuple[int, int]) -> List[np.ndarray]:
    """Read frames from the model's source for at most ``capture_s``; keep them on disk."""
    from edged.pipeline.sources import create_source

    source = create_source(model.source, net_hw)
    frames: List[np.ndarray] = []
    stop = threading.Event()
    deadline = time.monotonic() + settings.capture_s
    timer = threading.Timer(settings.capture_s, stop.set)  # a source blocked in read() wakes on stop
    timer.daemon = True
    source.open()
    timer.start()
    try:
        used = 0
        while len(frames) < settings.max_images and time.monotonic() < deadline:
            frame = source.read(stop)
            if frame is None:
                break
            image = np.ascontiguousarray(_fit(frame.image, net_hw))
            if used + image.nbytes > settings.capture_max_bytes:
                break
            frames.append(image)
            used += image.nbytes
    finally:
        timer.cancel()
        source.close()
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(frames):
        tmp, final = folder / f".tmp-frame-{index:04d}.npy", folder / f"frame-{index:04d}.npy"
        np.save(tmp, image, allow_pickle=False)
        os.replace(tmp, final)
    return frames


def _synthetic(net_hw: Tuple[int, int], count: int) -> List[np.ndarray]:
    rng = np.random.default_rng(_SYNTHETIC_SEED)
    return [rng.integers(0, 256, size=(*net_hw, 3), dtype=np.uint8) for _ in range(count)]


def select_validation(
    model: ModelConfig, settings: AccuracySettings, cache_dir: str, net_hw: Tuple[int, int]
) -> ValidationSet:
    """The validation frames for ``model`` (see the module's docstring for the order).
    A configured folder that cannot be read is an error naming its key; a source that
    cannot be captured from leaves synthetic data, with the reason in the description."""
    limit = settings.max_images
    if settings.images:
        frames = _image_folder(settings.images, limit, "accuracy.images")
        text = f"{len(frames)} validation images from {settings.images}"
        return ValidationSet("folder", text, frames, _digest(frames))
    if model.calibration:
        images = str(model.calibration["images"])
        frames = _image_folder(images, limit, "calibration.images")
        return ValidationSet("calibration", f"{len(frames)} calibration images from {images}", frames, _digest(frames))
    if model.source.type == "synthetic":
        why = "the model's source is synthetic too"
    elif settings.capture_s <= 0:
        why = "accuracy.capture_s is 0"
    else:
        folder = capture_folder(model, cache_dir)
        frames = _stored_frames(folder, limit)
        why = f"the {model.source.type} source gave no frames within {settings.capture_s:g} s"
        try:
            frames = frames or _capture(model, settings, folder, net_hw)
        except (EdgedError, OSError) as exc:
            why = f"capturing from the {model.source.type} source failed: {exc}"
            log.warning("model %s: accuracy check: %s", model.name, why)
        if frames:
            text = f"{len(frames)} frames captured from the model's {model.source.type} source ({folder})"
            return ValidationSet("captured", text, frames, _digest(frames))
    frames = _synthetic(net_hw, limit)
    text = f"SYNTHETIC data: {len(frames)} random frames (no calibration or validation images; {why})"
    return ValidationSet("synthetic", text, frames, _digest(frames))
