from __future__ import annotations

import numpy as np

from edged.pipeline.stats import LatencyHistogram, WindowedHistogram


def test_percentiles_are_within_bucket_resolution_of_exact_ones() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(mean=1.0, sigma=1.2, size=20_000)
    hist = LatencyHistogram()
    for v in values:
        hist.record(float(v))
    for q in (50, 90, 99):
        exact = float(np.percentile(values, q, method="inverted_cdf"))
        assert abs(hist.percentile(q) - exact) / exact < 0.021  # type: ignore[operator]
    assert hist.max_ms == values.max()
    assert hist.count == len(values)
    assert len(hist.counts) < 1000  # bounded, whatever the number of samples


def test_window_forgets_old_samples() -> None:
    window = WindowedHistogram(window_s=6.0, slices=6)
    window.record(100.0, now=1.0)
    window.record(1.0, now=5.5)
    assert window.snapshot(now=5.9).max_ms == 100.0
    assert window.snapshot(now=7.5).count == 1
    assert window.snapshot(now=20.0).percentile(50) is None
