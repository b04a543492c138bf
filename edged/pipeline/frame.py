"""The unit that flows through a pipeline."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

__all__ = ["Frame"]


class Frame:
    """One captured image and what the pipeline learns about it.

    ``image`` is HWC uint8 BGR (OpenCV's and GStreamer's usual order). Timestamps are
    ``time.monotonic()`` seconds so stage latencies never jump with the wall clock;
    ``wall_ts`` is the capture time on the wall clock (epoch seconds) that results carry.
    ``source`` is the id of the model's source it came from; the pipeline numbers each
    source's frames (``seq``) in the order they came in.
    """

    __slots__ = (
        "capture_ts",
        "enqueue_ts",
        "image",
        "meta",
        "origin",
        "preprocess_ms",
        "seq",
        "source",
        "tensor",
        "wall_ts",
    )

    def __init__(self, seq: int, image: np.ndarray, capture_ts: float, origin: str = "") -> None:
        self.seq = seq
        self.image = image
        self.capture_ts = capture_ts
        self.origin = origin
        self.tensor: Optional[np.ndarray] = None
        self.enqueue_ts = 0.0
        self.preprocess_ms = 0.0
        self.meta: Dict[str, Any] = {}
        self.source = ""
        self.wall_ts = 0.0
