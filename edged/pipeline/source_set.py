"""The sources of one running model: started together, edited one by one while it runs.

A push that adds, removes or changes sources of a model (and nothing else of it) becomes a
:class:`SourceEdit`: the new sources are opened beside the running ones (a missing file
fails the push there, with nothing changed), then put in force in one step. A removed
source stops reading and its queued frames are still served; a changed source hands its
lane and its numbering to its successor; the engine and the other sources never pause.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from edged.config.model import ModelConfig
from edged.pipeline.source_feed import FeedParts, SourceFeed
from edged.pipeline.sources import Source

__all__ = ["SourceEdit", "SourceSet"]


@dataclass
class SourceEdit:
    """Sources of a running model to add, change (by id) or remove, with the new ones
    already opened; :meth:`SourceSet.apply` puts it in force."""

    config: ModelConfig
    opened: Dict[str, SourceFeed] = field(default_factory=dict)  # added and changed, by id
    removed: List[str] = field(default_factory=list)


class SourceSet:
    """``ended`` is called once every source in force has ended, with the failure that
    ended the last one standing (``"source <id>: <why>"``, or just the reason for a model
    with one source), or None when they finished or were stopped."""

    def __init__(
        self,
        model: ModelConfig,
        frame_hw: Tuple[int, int],
        parts: FeedParts,
        ended: Callable[[Optional[str]], None],
    ) -> None:
        self._frame_hw = frame_hw
        parts.on_done = self._feed_done
        self._parts = parts
        self._ended = ended
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._feeds: Dict[str, SourceFeed] = {  # in force, in config order
            s.id: SourceFeed(s, frame_hw, self._parts, model.name) for s in model.sources
        }
        self._retired: List[SourceFeed] = []  # replaced or removed by a push, maybe still ending
        # Feeds whose reader has ended, recorded under the lock by the reader itself: two
        # readers ending at once each see the other's thread still alive (it is in its own
        # last call), so thread liveness would leave the set never ended.
        self._ended_feeds: Set[SourceFeed] = set()

    def _all(self) -> List[SourceFeed]:
        with self._lock:
            return [*self._feeds.values(), *self._retired]

    # -- together --------------------------------------------------------------------------

    def open(self) -> None:
        """Open every source; the first that cannot be opened raises, and none stays open."""
        opened: List[SourceFeed] = []
        try:
            for feed in self._feeds.values():
                feed.open()
                opened.append(feed)
        except Exception:
            for feed in opened:
                feed.close()
            raise

    def start(self) -> None:
        for feed in self._feeds.values():
            feed.start()

    def stop(self) -> None:
        for feed in self._all():
            feed.stop()

    def join(self, deadline: Optional[float]) -> None:
        for feed in self._all():
            feed.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        return any(feed.alive for feed in self._all())

    @property
    def ended(self) -> bool:
        """Every source in force has ended (exhausted, failed or stopped)."""
        return self._done.is_set()

    def close_unstarted(self) -> None:
        for feed in self._all():
            if feed.state == "created":
                feed.close()

    @property
    def first(self) -> Source:
        with self._lock:
            return next(iter(self._feeds.values())).source

    def status(self) -> List[Dict[str, Any]]:
        with self._lock:
            feeds = list(self._feeds.values())
        return [feed.status() for feed in feeds]

    def _feed_done(self, feed: SourceFeed) -> None:
        with self._lock:
            self._ended_feeds.add(feed)
            current = list(self._feeds.values())
            if feed not in current or not all(f in self._ended_feeds for f in current) or self._done.is_set():
                return
            self._done.set()
        failed = [f for f in current if f.state == "failed"]
        why = None
        if failed:
            first = failed[0]
            why = (first.error or "failed") if len(current) == 1 else f"source {first.id}: {first.error}"
        self._ended(why)

    # -- one by one ------------------------------------------------------------------------

    def prepare(
        self, model: ModelConfig, added: Sequence[str], changed: Sequence[str], removed: Sequence[str]
    ) -> SourceEdit:
        """Open the sources ``model`` adds or changes (by id), beside the running ones.
        Raises what opening raises (a missing file); then nothing was left open."""
        edit = SourceEdit(model, removed=list(removed))
        by_id = {s.id: s for s in model.sources}
        try:
            for source_id in [*added, *changed]:
                old = self._feeds.get(source_id)
                numbers = old.numbers if old is not None else None
                feed = SourceFeed(by_id[source_id], self._frame_hw, self._parts, model.name, numbers)
                edit.opened[source_id] = feed
                feed.open()
        except Exception:
            self.discard(edit)
            raise
        return edit

    def apply(self, edit: SourceEdit) -> None:
        with self._lock:
            leaving = [self._feeds[i] for i in [*edit.removed, *edit.opened] if i in self._feeds]
            self._feeds = {s.id: edit.opened.get(s.id) or self._feeds[s.id] for s in edit.config.sources}
            self._retired += leaving
        for feed in leaving:
            feed.stop()
        for source_id in edit.removed:
            self._parts.lanes.close_lane(source_id)
        for feed in edit.opened.values():
            feed.start()

    def discard(self, edit: SourceEdit) -> None:
        """Close the sources an edit opened (the push was aborted)."""
        for feed in edit.opened.values():
            feed.close()
