"""The check runs at the lowest CPU priority on its own thread and stops at its time budget;
with nothing better to go on it says plainly that the data was synthetic."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping

import numpy as np

from edged.accuracy.gate import LOWEST_PRIORITY, check_plan
from edged.accuracy.settings import settings_for
from edged.accuracy.validation import select_validation
from edged.backends.base import BuildOptions, Runner
from edged.backends.onnxruntime.backend import OnnxRuntimeBackend
from edged.config import parse_config
from edged.config.model import ModelConfig
from tests.accuracy.conftest import digits_config
from tests.accuracy.digits import Digits


class _Slow(Runner):
    """A real runner that takes ``delay_s`` per batch and notes the priority it ran at."""

    def __init__(self, inner: Runner, delay_s: float, seen: List[int]) -> None:
        super().__init__()
        self.inner, self.inputs, self.outputs = inner, inner.inputs, inner.outputs
        self.delay_s, self.seen = delay_s, seen

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        time.sleep(self.delay_s)
        return self.inner.infer(feeds)


def _model(digits: Digits, folders: Dict[str, Path], tmp_path: Path, **accuracy: Any) -> ModelConfig:
    doc = digits_config(digits, folders, tmp_path, precision="fp16", accuracy=accuracy)
    return parse_config(doc).models[0]


def test_the_check_runs_at_the_lowest_priority_and_stops_at_its_budget(
    digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path
) -> None:
    model = _model(digits, digit_folders, tmp_path, images=str(digit_folders["held_out"]), time_budget_s=0.3)
    settings = settings_for(model)
    ort = OnnxRuntimeBackend()
    original = digits.model.read_bytes()
    seen: List[int] = []
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    started = time.monotonic()
    verdict = check_plan(
        model, "fp16", "cpu",
        lambda: _Slow(ort.load_plan(original, BuildOptions(threads=1)), 0.1, seen),
        lambda: ort.load_plan(original, BuildOptions(threads=1)), "reference",
        lambda hw: select_validation(model, settings, str(tmp_path), hw), settings,
    )  # fmt: skip
    assert time.monotonic() - started < 2.0
    assert verdict.truncated and 0 < verdict.data["samples"] < 64
    assert verdict.data["samples"] % model.batch == 0  # whole batches only
    assert verdict.passed  # the same model: what was compared agrees
    assert seen and set(seen) == {LOWEST_PRIORITY}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller  # the caller's is unchanged
    assert "time budget reached" in verdict.summary()


def test_a_synthetic_source_gives_synthetic_data_said_plainly(
    digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path
) -> None:
    doc = digits_config(digits, digit_folders, tmp_path, precision="fp16")
    doc["models"][0]["source"] = {"type": "synthetic", "count": 10}
    model = parse_config(doc).models[0]
    validation = select_validation(model, settings_for(model), str(tmp_path), (8, 8))
    assert validation.source == "synthetic" and len(validation.frames) == 64
    assert validation.description.startswith("SYNTHETIC data: 64 random frames")
    assert "the model's source is synthetic too" in validation.description
    again = select_validation(model, settings_for(model), str(tmp_path), (8, 8))
    assert again.digest == validation.digest  # seeded: a cached verdict stays valid


def test_a_source_that_cannot_be_captured_from_leaves_synthetic_data_with_the_reason(
    digits: Digits, digit_folders: Dict[str, Path], tmp_path: Path
) -> None:
    doc = digits_config(digits, digit_folders, tmp_path, precision="fp16")
    doc["models"][0]["source"] = {"type": "images", "path": str(tmp_path / "no-such-folder")}
    model = parse_config(doc).models[0]
    validation = select_validation(model, settings_for(model), str(tmp_path), (8, 8))
    assert validation.source == "synthetic"
    assert "capturing from the images source failed" in validation.description
    assert "no-such-folder" in validation.description
