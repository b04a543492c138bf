"""One source of a model: its own reader thread, rate limit, numbering and state.

Each source of a model reads on its own thread into its own lane of the model's
:class:`~edged.pipeline.fair_queue.FairQueue`, so a camera that stalls, reconnects or fails
holds up only itself: the other sources and the engine keep their rate. A GStreamer source
keeps its own GStreamer pipeline (edged/pipeline/sources/gst.py).

Every frame the source yields is counted in (under its source id) and given the next
number of that source; it then ends in the sink or in a drop with a reason:
``rate_limit`` (over the source's ``fps``), ``queue_full`` (its lane was full: a live
source's oldest frame), ``source_removed`` (a push removed the source while the frame was
on its way), or the pipeline's reasons downstream.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from edged.config.model import SourceConfig
from edged.errors import EdgedError
from edged.pipeline.fair_queue import FairQueue
from edged.pipeline.frame import Frame
from edged.pipeline.sources import Source, create_source
from edged.pipeline.sources.pacing import Pacer, RateLimit
from edged.pipeline.stats import ModelStats

__all__ = ["SourceFeed", "FeedParts"]

log = logging.getLogger(__name__)


@dataclass
class FeedParts:
    """What the feeds of one pipeline share: the lanes, the counters, the frame preparation
    (preprocessing into a pooled tensor), tensor recycling, the pipeline's abort, and who
    hears that a feed's reader ended."""

    lanes: FairQueue
    stats: ModelStats
    prepare: Callable[[Frame], None]
    recycle: Callable[[List[Frame]], None]
    abort: threading.Event
    on_done: Callable[["SourceFeed"], None] = field(default=lambda feed: None)


class SourceFeed:
    def __init__(
        self,
        config: SourceConfig,
        frame_hw: Tuple[int, int],
        parts: FeedParts,
        model_name: str,
        numbers: Optional[Iterator[int]] = None,
    ) -> None:
        self.config = config
        self.id = config.id
        self._parts = parts
        self._model_name = model_name
        self.source: Source = create_source(config.plugin, frame_hw)
        self.source.skipped = self._skipped
        # Shared with the feed this one replaces (a source changed by a push), so the
        # source's numbers go on where they were.
        self.numbers: Iterator[int] = numbers if numbers is not None else itertools.count()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.state = "created"  # created | live | finished | stopped | failed
        self.error: Optional[str] = None
        limit = self.source.fps_limit
        self._rate = RateLimit(limit) if limit and self.source.live else None
        self._pacer = Pacer(limit) if limit and not self.source.live else None

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Acquire the source; a SourceError names what is wrong (a missing file)."""
        self.source.open()

    def start(self) -> None:
        self._parts.lanes.set_lane(self.id, self.config.queue_size, self.source.live)
        self.state = "live"
        self._thread = threading.Thread(
            target=self._run, name=f"edged-{self._model_name}-source-{self.id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the reader to stop (it closes the source when it ends)."""
        self._stop.set()

    def close(self) -> None:
        """Release a source that was opened but never started (a push that was aborted)."""
        self.source.close()

    def join(self, timeout: Optional[float]) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- state -----------------------------------------------------------------------------

    def status(self) -> Dict[str, Any]:
        """id, type, state (live, reconnecting, failed, finished, stopped), the error or the
        reason of the outage, the seconds to the next retry, and the source's own detail."""
        detail = self.source.status()
        doc: Dict[str, Any] = {"id": self.id, "type": self.config.plugin.type, "state": self.state}
        if self.state == "live" and detail.get("state") == "reconnecting":
            doc["state"] = "reconnecting"
            if detail.get("retry_in_s") is not None:
                doc["retry_in_s"] = detail["retry_in_s"]
            if detail.get("last_error"):
                doc["error"] = detail["last_error"]
        if self.error:
            doc["error"] = self.error
        if detail:
            doc["detail"] = detail
        return doc

    # -- the reader thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._pacer is not None and not self._pacer.wait(self._stop):
                    break
                frame = self.source.read(self._stop)
                if frame is None:
                    break
                self._take(frame)
            self.state = "stopped" if self._stop.is_set() else "finished"
        except EdgedError as exc:
            self._failed(str(exc))
        except Exception as exc:  # the other sources keep serving; report this one
            log.exception("model %s: source %s failed", self._model_name, self.id)
            self._failed(f"source failed: {exc}")
        finally:
            try:
                self.source.close()
            finally:
                self._parts.on_done(self)

    def _failed(self, message: str) -> None:
        self.error = message
        self.state = "failed"
        log.error("model %s: source %s: %s", self._model_name, self.id, message)

    def _skipped(self, reason: str) -> None:
        next(self.numbers)
        self._parts.stats.count_in(source=self.id)
        self._parts.stats.count_drop(reason, source=self.id)

    def _take(self, frame: Frame) -> None:
        parts = self._parts
        frame.source = self.id
        frame.seq = next(self.numbers)
        frame.wall_ts = time.time() - (time.monotonic() - frame.capture_ts)
        parts.stats.count_in(source=self.id)
        if self._rate is not None and not self._rate.admit(frame.capture_ts):
            parts.stats.count_drop("rate_limit", source=self.id)
            return
        parts.prepare(frame)
        lost = parts.lanes.put(self.id, frame, parts.abort)
        for each in lost:
            reason = "queue_full" if each is not frame else "shutdown" if parts.abort.is_set() else "source_removed"
            parts.stats.count_drop(reason, source=each.source)
        if lost:
            parts.recycle(lost)
