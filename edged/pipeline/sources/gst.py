"""Video sources through GStreamer (PyGObject, imported on first use): file, rtsp, v4l2, csi.

A failing live source (stream down, camera unplugged) is torn down and restarted with
jittered exponential backoff; its state and counters (reconnects, outages and their
length) are reported through ``status()`` for the status line and telemetry, while the
other models keep running. A file that ends is looped or finishes the source; a file
that cannot be decoded is an error.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np

from edged.config.model import PluginConfig
from edged.errors import SourceError
from edged.pipeline.frame import Frame
from edged.pipeline.sources.base import Source
from edged.pipeline.sources.gst_pipelines import describe

__all__ = ["GstSource"]

log = logging.getLogger(__name__)

_PULL_TIMEOUT_NS = 100_000_000
_START_TIMEOUT_S = 10.0


def _gst() -> Tuple[Any, Any]:
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstVideo", "1.0")
        from gi.repository import Gst, GstVideo
    except (ImportError, ValueError) as exc:
        raise SourceError(
            "video sources need GStreamer's Python bindings: apt install python3-gi gir1.2-gstreamer-1.0 "
            "gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav"
        ) from exc
    if not Gst.is_initialized():
        Gst.init(None)
    return Gst, GstVideo


class GstSource(Source):
    def __init__(self, config: PluginConfig, frame_hw: Tuple[int, int]) -> None:
        super().__init__(config, frame_hw)
        self.kind = config.type
        self.live = self.kind != "file"
        self.loop = bool(config.get("loop", False))
        # A camera is asked for its rate (v4l2, csi caps); a stream or file sends what it has.
        self.fps_limit = float(config.get("fps", 0)) if self.kind in ("file", "rtsp") else 0.0
        self.backoff_max_s = float(config.get("retry_max_s", 30.0))
        self.silence_s = float(config.get("silence_s", 10.0))
        self._last_frame = 0.0
        self._gst, self._video = _gst()
        self._pipeline: Any = None
        self._sink: Any = None
        self._failures = 0
        self._retry_at = 0.0
        self._down_since: Optional[float] = None
        self._lock = threading.Lock()
        self._status: Dict[str, Any] = {"state": "created", "reconnects": 0, "outages": 0, "outage_s": 0.0, "frames": 0}

    # -- status ---------------------------------------------------------------------------

    def status(self) -> Dict[str, Any]:
        with self._lock:
            doc = dict(self._status)
        now = time.monotonic()
        if self._down_since is not None:
            doc["outage_s"] = doc["outage_s"] + (now - self._down_since)
        if doc["state"] == "reconnecting":
            doc["retry_in_s"] = round(max(0.0, self._retry_at - now), 1)
        return doc

    def _set(self, **values: Any) -> None:
        with self._lock:
            self._status.update(values)

    # -- pipeline lifecycle ---------------------------------------------------------------

    def describe(self) -> str:
        return describe(self.kind, self.config.params, lambda name: self._gst.ElementFactory.find(name) is not None)

    def open(self) -> None:
        if self.kind == "file":
            import os

            path = self.config.get("path")
            if not os.path.isfile(path):
                raise SourceError(f"source.path: no such file {path!r}")
            self._start()  # a file that does not play is a configuration error
        else:
            try:
                self._start()
            except SourceError as exc:
                self._went_down(str(exc))

    def _start(self) -> None:
        gst = self._gst
        description = self.describe()
        try:
            pipeline = gst.parse_launch(description)
        except Exception as exc:  # GLib.Error, with GStreamer's own message
            raise SourceError(f"source ({self.kind}): cannot build pipeline: {exc}") from exc
        sink = pipeline.get_by_name("sink")
        pipeline.set_state(gst.State.PLAYING)
        result, _, _ = pipeline.get_state(int(_START_TIMEOUT_S * 1e9))
        if result == gst.StateChangeReturn.FAILURE:
            error = self._bus_error(pipeline) or "pipeline did not start"
            pipeline.set_state(gst.State.NULL)
            raise SourceError(f"source ({self.kind}): {error}")
        self._pipeline, self._sink = pipeline, sink
        self._last_frame = time.monotonic()
        if self._down_since is None:
            self._failures = 0
            self._set(state="running", last_error=None)
        # Otherwise the source is back only with its first frame: a live source reaches
        # PLAYING at once (NO_PREROLL) and rtspsrc reports a refused connection on the bus
        # a moment later, so a restart that "started" may still be the same outage.

    def _back(self) -> None:
        assert self._down_since is not None
        with self._lock:
            self._status["outage_s"] += time.monotonic() - self._down_since
            self._status["reconnects"] += 1
            self._status.update(state="running", last_error=None)
        self._down_since = None
        log.info("source %s: back after %d attempts", self.kind, self._failures)
        self._failures = 0

    def _bus_error(self, pipeline: Any) -> Optional[str]:
        bus = pipeline.get_bus()
        message = bus.pop_filtered(self._gst.MessageType.ERROR)
        if message is None:
            return None
        error, _ = message.parse_error()
        return str(error.message)

    def _teardown(self) -> None:
        if self._pipeline is not None:
            self._pipeline.set_state(self._gst.State.NULL)
        self._pipeline = self._sink = None

    def _went_down(self, reason: str) -> None:
        self._teardown()
        self._failures += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            with self._lock:
                self._status["outages"] += 1
            log.warning("source %s down: %s; retrying with backoff", self.kind, reason)
        cap = min(self.backoff_max_s, 0.5 * 2 ** min(self._failures - 1, 10))
        self._retry_at = time.monotonic() + cap / 2 + random.uniform(0, cap / 2)
        self._set(state="reconnecting", last_error=reason)

    def close(self) -> None:
        self._teardown()
        self._set(state="stopped")

    # -- frames ---------------------------------------------------------------------------

    def _to_array(self, sample: Any) -> np.ndarray:
        info = self._video.VideoInfo.new_from_caps(sample.get_caps())
        buffer = sample.get_buffer()
        ok, mapped = buffer.map(self._gst.MapFlags.READ)
        if not ok:
            raise SourceError(f"source ({self.kind}): cannot map a frame buffer")
        try:
            stride = info.stride[0]
            rows = np.frombuffer(mapped.data, dtype=np.uint8, count=stride * info.height).reshape(info.height, stride)
            image: np.ndarray = rows[:, : info.width * 3].reshape(info.height, info.width, 3).copy()
        finally:
            buffer.unmap(mapped)
        return image

    def _check_bus(self) -> Optional[str]:
        """'eos', an error text, or None."""
        bus = self._pipeline.get_bus()
        message = bus.pop_filtered(self._gst.MessageType.ERROR | self._gst.MessageType.EOS)
        if message is None:
            return None
        if message.type == self._gst.MessageType.EOS:
            return "eos"
        error, _ = message.parse_error()
        return str(error.message)

    def read(self, stop: threading.Event) -> Optional[Frame]:
        while not stop.is_set():
            if self._pipeline is None:
                if self.kind == "file":
                    return None
                if time.monotonic() < self._retry_at:
                    stop.wait(min(0.1, self._retry_at - time.monotonic()))
                    continue
                try:
                    self._start()
                except SourceError as exc:
                    self._went_down(str(exc))
                continue
            sample = self._sink.emit("try-pull-sample", _PULL_TIMEOUT_NS)
            if sample is not None:
                if self._down_since is not None:
                    self._back()
                image = self._to_array(sample)
                with self._lock:
                    self._status["frames"] += 1
                self._last_frame = time.monotonic()
                return Frame(self._next_seq(), image, time.monotonic(), origin=self.kind)
            event = self._check_bus()
            if event is None:
                if self.live and time.monotonic() - self._last_frame > self.silence_s:
                    # A camera that stops sending without an error or EOS (RTSP over TCP
                    # keeps the session up) would otherwise look "running" for ever.
                    self._went_down(f"no frame for {self.silence_s:g} s")
                continue
            if event == "eos" and self.kind == "file":
                if self.loop:
                    self._pipeline.seek_simple(self._gst.Format.TIME, self._gst.SeekFlags.FLUSH, 0)
                    continue
                self._teardown()
                self._set(state="finished")
                return None
            if self.kind == "file":
                self._teardown()
                raise SourceError(f"source.path: {self.config.get('path')!r}: {event}")
            self._went_down("end of stream" if event == "eos" else event)
        return None
