"""Energy from power samples, integrated by the trapezoid rule over a sliding window.

jtop's ``avg`` is an exponential smoothing, not a mean; integrating the samples
ourselves gives energy that divides honestly by the inferences run meanwhile.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Optional, Tuple

__all__ = ["EnergyWindow"]


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
