"""Progress of the downloads under way, as immutable values for every reader
(``config/result`` interim results, telemetry, the status lines)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["DownloadBoard", "DownloadProgress", "RateMeter"]


@dataclass(frozen=True)
class DownloadProgress:
    model: str
    field: str
    url: str
    bytes_done: int
    total_bytes: Optional[int]
    rate_bps: float
    state: str = "downloading"  # downloading | verifying | retrying

    @property
    def eta_s(self) -> Optional[float]:
        if self.total_bytes is None or self.rate_bps <= 0:
            return None
        return max(0.0, (self.total_bytes - self.bytes_done) / self.rate_bps)

    def as_dict(self) -> Dict[str, Any]:
        eta = self.eta_s
        return {
            "model": self.model,
            "field": self.field,
            "url": self.url,
            "state": self.state,
            "bytes": self.bytes_done,
            "total_bytes": self.total_bytes,
            "rate_bps": round(self.rate_bps, 1),
            "eta_s": None if eta is None else round(eta, 1),
        }

    def line(self) -> str:
        total = "?" if self.total_bytes is None else f"{self.total_bytes / 1e6:.1f}"
        eta = self.eta_s
        return (
            f"{self.model}: {self.state} {self.field} {self.bytes_done / 1e6:.1f}/{total} MB "
            f"at {self.rate_bps / 1e6:.2f} MB/s, eta {'-' if eta is None else f'{eta:.0f}s'}"
        )


class RateMeter:
    """Bytes per second over the last few seconds (a running download's pace, not its
    average since a resume)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._window_s = window_s
        self._samples: List[Tuple[float, int]] = []

    def add(self, done: int, now: Optional[float] = None) -> float:
        now = time.monotonic() if now is None else now
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window_s:
            self._samples.pop(0)
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


class DownloadBoard:
    """The downloads under way, keyed by (model, field); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Dict[Tuple[str, str], DownloadProgress] = {}

    def update(self, progress: DownloadProgress) -> None:
        with self._lock:
            self._current[(progress.model, progress.field)] = progress

    def finish(self, model: str, field: str) -> None:
        with self._lock:
            self._current.pop((model, field), None)

    def snapshot(self) -> Tuple[DownloadProgress, ...]:
        with self._lock:
            return tuple(self._current.values())
