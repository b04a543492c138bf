"""Energy from power samples, integrated by the trapezoid rule over a sliding window.

jtop's ``avg`` is an exponential smoothing, not a mean; integrating the samples
ourselves gives energy that divides honestly by the inferences run meanwhile.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Optional, Tuple

__all__ = ["EnergyWindow", "CounterWindow"]


class EnergyWindow:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: Deque[Tuple[float, float, int]] = deque()  # (t, power_mw, inferences so far)

    def add(self, t: float, power_mw: float, inferences_total: int) -> None:
        self._samples.append((t, power_mw, inferences_total))
        while len(self._samples) > 2 and t - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def energy_mj(self) -> Optional[float]:
        """Energy (mJ) between the first and last sample in the window."""
        if len(self._samples) < 2:
            return None
        total = 0.0
        samples = list(self._samples)
        for (t0, p0, _), (t1, p1, _) in zip(samples, samples[1:]):
            total += (p0 + p1) / 2.0 * (t1 - t0)  # mW * s = mJ
        return total

    def per_inference_mj(self) -> Optional[float]:
        energy = self.energy_mj()
        if energy is None:
            return None
        inferences = self._samples[-1][2] - self._samples[0][2]
        return energy / inferences if inferences > 0 else None


class CounterWindow:
    """Energy per inference from a cumulative energy counter (NVML's, in mJ) over a sliding
    window: the counter's own integration beats sampling power (DESIGN.md §8)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: Deque[Tuple[float, float, float]] = deque()  # (t, counter mJ, inferences so far)

    def add(self, t: float, counter_mj: float, inferences_total: float) -> None:
        if self._samples and counter_mj < self._samples[-1][1]:
            self._samples.clear()  # the driver reloaded: the counter restarted from zero
        self._samples.append((t, counter_mj, inferences_total))
        while len(self._samples) > 2 and t - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def per_inference_mj(self) -> Optional[float]:
        if len(self._samples) < 2:
            return None
        (_, e0, n0), (_, e1, n1) = self._samples[0], self._samples[-1]
        return (e1 - e0) / (n1 - n0) if n1 > n0 else None
