"""The sources of one model end together (edged/pipeline/source_set.py)."""

from __future__ import annotations

import threading
import time
from typing import List, Optional

from edged.config import parse_config
from edged.pipeline.fair_queue import FairQueue
from edged.pipeline.frame import Frame
from edged.pipeline.source_feed import FeedParts, SourceFeed
from edged.pipeline.source_set import SourceSet
from edged.pipeline.stats import ModelStats


def _recycle(frames: List[Frame]) -> None:
    return None


def test_readers_ending_at_the_same_moment_end_the_set() -> None:
    doc = {
        "name": "m",
        "path": "model.onnx",
        "sources": [{"id": f"s{i}", "type": "synthetic", "fps": 0, "count": 1, "size": [8, 8]} for i in range(4)],
    }
    model = parse_config({"device": {"id": "t"}, "models": [doc]}).models[0]
    ended: List[Optional[str]] = []
    parts = FeedParts(FairQueue(), ModelStats(), lambda frame: None, _recycle, threading.Event())
    sources = SourceSet(model, (8, 8), parts, ended.append)
    reported = parts.on_done

    def report_then_linger(feed: SourceFeed) -> None:
        reported(feed)
        time.sleep(0.05)  # each reader's thread lives on a moment after its last report

    parts.on_done = report_then_linger
    sources.open()
    sources.start()
    sources.join(time.monotonic() + 5.0)
    assert not sources.alive
    # Each reader saw the others' threads still alive when it reported; the set ended anyway.
    assert sources.ended and ended == [None]
