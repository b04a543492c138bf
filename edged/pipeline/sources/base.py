"""The source interface and its registry."""

from __future__ import annotations

import abc
import importlib
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from edged.config.model import PluginConfig
from edged.errors import ConfigError
from edged.pipeline.frame import Frame

__all__ = ["Source", "SOURCES", "create_source"]


class Source(abc.ABC):
    """Produces frames. ``live`` sources (cameras, streams, rate-paced generators) drop
    the oldest queued frame when inference falls behind, to keep latency low; the others
    (files, folders) block instead, so no frame is ever lost."""

    live: bool = False
    # Frames per second the pipeline holds this source to (dropping a live source's extra
    # frames, pacing a file's); 0: none, the source paces itself or sends what it gets.
    fps_limit: float = 0.0

    def __init__(self, config: PluginConfig, frame_hw: Tuple[int, int]) -> None:
        self.config = config
        self.frame_hw = frame_hw
        self._seq = 0
        # Called with a drop reason for each input the source skipped (a bad image file):
        # the pipeline counts it in and dropped, so frames_in == frames_out + dropped holds.
        self.skipped: Callable[[str], None] = _ignore_skip

    def open(self) -> None:
        """Acquire the device, stream or folder; raise SourceError naming it on failure."""

    @abc.abstractmethod
    def read(self, stop: threading.Event) -> Optional[Frame]:
        """The next frame, or None when the source is exhausted or ``stop`` is set. The
        frame's image is never written to again: the engine may read it where it lies
        (edged.pipeline.preprocess.Preprocessor.as_is)."""

    def close(self) -> None:
        """Release what ``open`` acquired."""

    def status(self) -> Dict[str, Any]:
        """The source's own state and counters (a stream's reconnects and outages, with its
        ``state`` and ``retry_in_s`` while reconnecting); empty when it keeps none."""
        return {}

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq


def _ignore_skip(reason: str) -> None:
    """The default for a source used without a pipeline (tests, tools)."""


# Source type -> "module:class"; imported on use so optional media libraries stay optional.
SOURCES: Dict[str, str] = {
    "synthetic": "edged.pipeline.sources.synthetic:SyntheticSource",
    "images": "edged.pipeline.sources.images:ImageFolderSource",
    "file": "edged.pipeline.sources.gst:GstSource",
    "rtsp": "edged.pipeline.sources.gst:GstSource",
    "v4l2": "edged.pipeline.sources.gst:GstSource",
    "csi": "edged.pipeline.sources.gst:GstSource",
}


def create_source(config: PluginConfig, frame_hw: Tuple[int, int]) -> Source:
    try:
        target = SOURCES[config.type]
    except KeyError:
        raise ConfigError(f"source.type: {config.type!r} is not one of {', '.join(sorted(SOURCES))}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    source: Source = cls(config, frame_hw)
    return source
