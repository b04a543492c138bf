"""Per-model counters and latency histograms with bounded memory.

Latencies go into log-spaced buckets (about 2% relative width from 1 us to 100 s), so
a percentile costs a pass over ~900 counters whatever the frame rate, and memory never
grows. A sliding window is kept as a ring of sub-window histograms.

Beside the window, every stage also counts since its pipeline began, in a few fixed bounds
(``CUMULATIVE_BOUNDS_MS``): cumulative counts that only grow are what a Prometheus histogram
is, and what a fleet can add up across devices (a windowed percentile cannot be averaged).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple
from typing import Counter as CounterType

__all__ = ["CUMULATIVE_BOUNDS_MS", "CumulativeLatency", "LatencyHistogram", "WindowedHistogram", "ModelStats", "STAGES"]

_MIN_MS = 0.001
_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
_BUCKETS = int(math.log(100_000.0 / _MIN_MS) / _LOG_GROWTH) + 2

# Stage names, in pipeline order; "e2e" is capture -> result written to the sink.
STAGES = ("queue_wait", "preprocess", "inference", "postprocess", "e2e")

# Upper bounds (ms, inclusive) of the cumulative buckets: from a DLA/GPU inference of a
# fraction of a millisecond to a camera pipeline backed up for seconds, about 1-2.5-5 per
# decade. Fixed, so that the same bucket means the same on every device of a fleet.
CUMULATIVE_BOUNDS_MS: Tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
)  # fmt: skip


def _bucket(value_ms: float) -> int:
    if value_ms <= _MIN_MS:
        return 0
    return min(int(math.log(value_ms / _MIN_MS) / _LOG_GROWTH) + 1, _BUCKETS - 1)


def _bucket_upper(index: int) -> float:
    return _MIN_MS * _GROWTH**index


class LatencyHistogram:
    """Counts of latencies (ms) in log buckets; exact count, sum and max."""

    __slots__ = ("count", "counts", "max_ms", "total_ms")

    def __init__(self) -> None:
        self.counts: List[int] = [0] * _BUCKETS
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0

    def record(self, value_ms: float) -> None:
        self.counts[_bucket(value_ms)] += 1
        self.count += 1
        self.total_ms += value_ms
        if value_ms > self.max_ms:
            self.max_ms = value_ms

    def merge(self, other: LatencyHistogram) -> None:
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.count += other.count
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def percentile(self, q: float) -> Optional[float]:
        """Upper edge of the bucket holding the q-th percentile (q in 0..100), capped at max."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return min(_bucket_upper(i), self.max_ms)
        return self.max_ms

    def summary(self) -> Dict[str, Optional[float]]:
        return {
            "count": float(self.count),
            "mean": self.total_ms / self.count if self.count else None,
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "max": self.max_ms if self.count else None,
        }


class CumulativeLatency:
    """Latencies since counting began, in the fixed ``CUMULATIVE_BOUNDS_MS``: ``counts[i]``
    holds those in (bound[i-1], bound[i]]; the last entry those above every bound. A frozen
    copy comes from :meth:`copy`; the pipeline's own instance only ever grows."""

    __slots__ = ("count", "counts", "total_ms")

    def __init__(self) -> None:
        self.counts: List[int] = [0] * (len(CUMULATIVE_BOUNDS_MS) + 1)
        self.count = 0
        self.total_ms = 0.0

    def record(self, value_ms: float) -> None:
        self.counts[bisect.bisect_left(CUMULATIVE_BOUNDS_MS, value_ms)] += 1
        self.count += 1
        self.total_ms += value_ms

    def copy(self) -> CumulativeLatency:
        other = CumulativeLatency()
        other.counts = list(self.counts)
        other.count = self.count
        other.total_ms = self.total_ms
        return other

    def cumulative(self) -> List[Tuple[float, int]]:
        """(upper bound in ms, count at or below it) for every bound, then (inf, count)."""
        out: List[Tuple[float, int]] = []
        seen = 0
        for bound, n in zip(CUMULATIVE_BOUNDS_MS, self.counts):
            seen += n
            out.append((bound, seen))
        out.append((math.inf, self.count))
        return out


class WindowedHistogram:
    """The last ``window_s`` seconds of latencies, as ``slices`` rotating sub-histograms,
    and every latency since it was made, cumulatively (``totals``)."""

    def __init__(self, window_s: float = 30.0, slices: int = 6) -> None:
        self._slice_s = window_s / slices
        self._ring = [LatencyHistogram() for _ in range(slices)]
        self._stamp = [0] * slices
        self._lock = threading.Lock()
        self._totals = CumulativeLatency()

    def _current(self, now: float) -> LatencyHistogram:
        tick = int(now / self._slice_s)
        i = tick % len(self._ring)
        if self._stamp[i] != tick:
            self._ring[i] = LatencyHistogram()
            self._stamp[i] = tick
        return self._ring[i]

    def record(self, value_ms: float, now: Optional[float] = None) -> None:
        with self._lock:
            self._current(time.monotonic() if now is None else now).record(value_ms)
            self._totals.record(value_ms)

    def totals(self) -> CumulativeLatency:
        """A copy of the cumulative counts, consistent with itself (taken under the lock)."""
        with self._lock:
            return self._totals.copy()

    def snapshot(self, now: Optional[float] = None) -> LatencyHistogram:
        now = time.monotonic() if now is None else now
        oldest = int(now / self._slice_s) - len(self._ring) + 1
        merged = LatencyHistogram()
        with self._lock:
            for stamp, hist in zip(self._stamp, self._ring):
                if stamp >= oldest:
                    merged.merge(hist)
        return merged


class ModelStats:
    """Counters and stage latencies of one model's pipeline, with each source's own frame
    counters (by source id) kept under the same lock, so they always sum to the totals.
    Thread-safe."""

    def __init__(self, window_s: float = 30.0) -> None:
        self._lock = threading.Lock()
        self.frames_in = 0
        self.frames_out = 0
        self.batches = 0
        self.batch_frames = 0
        self.dropped: CounterType[str] = Counter()
        self._sources: Dict[str, _SourceCounts] = {}
        self.latency: Dict[str, WindowedHistogram] = {s: WindowedHistogram(window_s) for s in STAGES}
        self.started = time.monotonic()

    def _source(self, source: Optional[str]) -> Optional[_SourceCounts]:
        if source is None:
            return None
        counts = self._sources.get(source)
        if counts is None:
            counts = self._sources[source] = _SourceCounts()
        return counts

    def count_in(self, n: int = 1, source: Optional[str] = None) -> None:
        with self._lock:
            self.frames_in += n
            counts = self._source(source)
            if counts is not None:
                counts.frames_in += n

    def count_out(self, n: int = 1, source: Optional[str] = None) -> None:
        with self._lock:
            self.frames_out += n
            counts = self._source(source)
            if counts is not None:
                counts.frames_out += n

    def count_drop(self, reason: str, n: int = 1, source: Optional[str] = None) -> None:
        with self._lock:
            self.dropped[reason] += n
            counts = self._source(source)
            if counts is not None:
                counts.dropped[reason] += n

    def count_batch(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.batch_frames += size

    def drop_unaccounted(self, reason: str) -> int:
        """Count every frame that came in but neither went out nor was dropped (still queued
        or in flight when the pipeline stopped) as dropped for ``reason``, per source."""
        with self._lock:
            total = 0
            for counts in self._sources.values():
                missing = counts.frames_in - counts.frames_out - sum(counts.dropped.values())
                if missing > 0:
                    counts.dropped[reason] += missing
            missing = self.frames_in - self.frames_out - sum(self.dropped.values())
            if missing > 0:
                self.dropped[reason] += missing
                total = missing
            return total

    def counters(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "dropped": dict(self.dropped),
                "batches": self.batches,
                "batch_frames": self.batch_frames,
                "sources": {
                    source: {"frames_in": c.frames_in, "frames_out": c.frames_out, "dropped": dict(c.dropped)}
                    for source, c in self._sources.items()
                },
            }


class _SourceCounts:
    __slots__ = ("dropped", "frames_in", "frames_out")

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.dropped: CounterType[str] = Counter()
