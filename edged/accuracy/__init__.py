"""The accuracy gate: a reduced-precision or DLA plan serves only once its outputs match the
model's FP32 reference on a validation set (docs/accuracy.md)."""

from __future__ import annotations

from edged.accuracy.settings import DEFAULT_THRESHOLDS, AccuracySettings, Thresholds, needs_gate, settings_for
from edged.accuracy.verdict import Verdict, judge

__all__ = ["DEFAULT_THRESHOLDS", "AccuracySettings", "Thresholds", "Verdict", "judge", "needs_gate", "settings_for"]
