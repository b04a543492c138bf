"""A push to many devices: collect their results, show progress, summarise, roll out in waves.

A group push is one message on ``edged/group/<g>/config/set``; every member answers on
its ``config/result`` (and, on MQTT 5, on edgectl's response topic). The summary counts
each device once, by its first answer: applied (or a duplicate of what it runs),
rejected (the push was refused, or dropped by a full queue), rolled back (the apply
failed and the old config stayed), failed, and silent (expected, never answered); with
the time from publishing to each result at p50 and p99.

``--canary N`` pushes to the group's members one device topic at a time, in waves of N,
2N, 4N, ... devices, and stops before the next wave when any device of a wave did not
apply the push or stayed silent: a bad config reaches N devices, not the fleet.
"""

from __future__ import annotations

import math
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO

from edged.ctl.session import Received, Session

__all__ = ["GOOD", "Tally", "collect", "percentile", "waves", "category"]

GOOD = ("applied", "duplicate")
_CATEGORIES = ("applied", "rejected", "rolled back", "failed", "silent")


def category(status: Any) -> str:
    if status in GOOD:
        return "applied"
    if status in ("rejected", "dropped"):
        return "rejected"
    if status == "rolled_back":
        return "rolled back"
    return "failed"


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """The nearest-rank percentile ``q`` (0-100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Tally:
    """Results by device, each device counted once."""

    expected: int = 0
    names: List[str] = field(default_factory=list)  # the expected devices, when known
    results: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)

    def add(self, result: Dict[str, Any], elapsed_s: float) -> bool:
        device = str(result.get("device"))
        if device in self.results:
            return False
        self.results[device] = result
        self.seconds[device] = elapsed_s
        return True

    def counts(self) -> Dict[str, int]:
        counts = {name: 0 for name in _CATEGORIES}
        for result in self.results.values():
            counts[category(result.get("status"))] += 1
        counts["silent"] = max(0, self.expected - len(self.results)) if self.expected else 0
        return counts

    def silent(self) -> List[str]:
        return [name for name in self.names if name not in self.results]

    def all_good(self) -> bool:
        counts = self.counts()
        return bool(self.results) and counts["applied"] == len(self.results) and not counts["silent"]

    def summary(self) -> str:
        counts = self.counts()
        times = list(self.seconds.values())
        p50, p99 = percentile(times, 50), percentile(times, 99)
        expected = f"{self.expected} expected, " if self.expected else ""
        parts = ", ".join(f"{counts[name]} {name}" for name in _CATEGORIES)
        line = f"summary: {expected}{len(self.results)} answered: {parts}"
        if p50 is not None and p99 is not None:
            line += f"; time to result p50 {p50:.2f} s, p99 {p99:.2f} s"
        silent = self.silent()
        if silent:
            line += f"\nsilent: {', '.join(silent[:20])}" + (
                f" and {len(silent) - 20} more" if len(silent) > 20 else ""
            )
        return line


class Progress:
    """One line on stderr: rewritten in place on a terminal, else at most once a second."""

    def __init__(self, tally: Tally, stream: TextIO = sys.stderr) -> None:
        self.tally = tally
        self.stream = stream
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self._shown = self.start

    def update(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown < (0.2 if self.tty else 1.0):
            return
        if not self.tty and now - self.start < 1.0:
            return  # a push answered within a second needs no progress lines in a log
        self._shown = now
        counts = self.tally.counts()
        total = f"/{self.tally.expected}" if self.tally.expected else ""
        bad = len(self.tally.results) - counts["applied"]
        answered = len(self.tally.results)
        text = f"{answered}{total} answered ({counts['applied']} applied, {bad} not) {now - self.start:.1f}s"
        self.stream.write((f"\r{text}\x1b[K" + ("\n" if final else "")) if self.tty else text + "\n")
        self.stream.flush()


def collect(
    session: Session,
    request_id: str,
    tally: Tally,
    published_at: float,
    timeout_s: float,
    on_result: Callable[[Dict[str, Any]], None],
    progress: Optional[Progress] = None,
    until: Optional[Callable[[], bool]] = None,
) -> None:
    """Read results answering ``request_id`` into ``tally`` until ``until()`` holds or
    ``timeout_s`` passed since ``published_at`` (time.monotonic()) or since the latest
    interim ``downloading`` report, which ``on_result`` also gets."""
    deadline = published_at + timeout_s
    done = until or (lambda: bool(tally.expected) and len(tally.results) >= tally.expected)
    while not done():
        now = time.monotonic()
        if now >= deadline:
            break
        try:
            msg: Received = session.messages.get(timeout=max(0.01, min(0.2, deadline - now)))
        except queue.Empty:
            if progress is not None:
                progress.update()
            continue
        result = msg.result_for(request_id)
        if result is not None:
            if result.get("status") == "downloading":
                # An interim report (docs/downloads.md): the device is working; wait anew.
                deadline = time.monotonic() + timeout_s
                on_result(result)
            elif tally.add(result, time.monotonic() - published_at):
                on_result(result)
            if progress is not None:
                progress.update()
    if progress is not None:
        progress.update(final=True)


def waves(devices: Sequence[str], canary: int) -> Iterable[List[str]]:
    """``devices`` in waves of ``canary``, then twice as many each time."""
    size, start = max(1, canary), 0
    while start < len(devices):
        yield list(devices[start : start + size])
        start += size
        size *= 2
