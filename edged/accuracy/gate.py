"""Run a validation set through a plan and its FP32 reference and judge the difference.

The check must not starve serving models: it runs on a thread of its own at the lowest
CPU priority (on Linux the nice value is per thread, setpriority(2) "BUGS"; threads a
session starts there inherit it), with ``accuracy.threads`` intra-op threads in its own
sessions, and stops comparing when ``accuracy.time_budget_s`` runs out (the samples done
so far are judged, and the verdict says the budget was reached).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from edged.accuracy.metrics import Comparison
from edged.accuracy.settings import AccuracySettings
from edged.accuracy.validation import ValidationSet
from edged.accuracy.verdict import Verdict, judge
from edged.backends.base import Runner
from edged.config.model import ModelConfig
from edged.errors import EdgedError

__all__ = ["check_plan", "LOWEST_PRIORITY"]

log = logging.getLogger(__name__)

LOWEST_PRIORITY = 19
# Beyond the comparison's budget, loading both sessions and choosing the data may take this long.
_SETUP_ALLOWANCE_S = 120.0

RunnerLoader = Callable[[], Runner]
DataLoader = Callable[[Tuple[int, int]], ValidationSet]


def _lower_this_thread() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)


def _batches(frames: List[np.ndarray], pre: Any, batch: int, name: str) -> List[Tuple[Dict[str, np.ndarray], int]]:
    """Feeds of exactly ``batch`` samples (a plan's profile may fix it); the last one is
    padded by repeating its first frame, and the count says how many samples are real."""
    out = []
    for start in range(0, len(frames), batch):
        chunk = frames[start : start + batch]
        real = len(chunk)
        chunk = chunk + [chunk[0]] * (batch - real)
        out.append(({name: np.ascontiguousarray(np.stack([pre(f) for f in chunk]))}, real))
    return out


def _compare(
    model: ModelConfig, plan: Runner, reference: Runner, data: DataLoader, deadline: float
) -> Tuple[Comparison, ValidationSet, int, bool]:
    from edged.pipeline.preprocess import Preprocessor

    if len(plan.inputs) != 1 or len(reference.inputs) != 1:
        raise EdgedError(f"models: {model.name!r}: the accuracy check feeds one image input")
    plan_pre = Preprocessor(model.preprocess, plan.inputs[0])
    ref_pre = Preprocessor(model.preprocess, reference.inputs[0])
    validation = data(plan_pre.hw)
    comparison = Comparison(model, reference.outputs, plan_pre.hw)
    names = [spec.name for spec in reference.outputs]
    plan_feeds = _batches(validation.frames, plan_pre, model.batch, plan.inputs[0].name)
    ref_feeds = _batches(validation.frames, ref_pre, model.batch, reference.inputs[0].name)
    samples, truncated = 0, False
    for (plan_feed, real), (ref_feed, _) in zip(plan_feeds, ref_feeds):
        if samples and time.monotonic() > deadline:
            truncated = True
            break
        got = plan.infer(plan_feed)
        ref = reference.infer(ref_feed)
        comparison.add({n: ref[n][:real] for n in names}, {n: got[n][:real] for n in names if n in got})
        samples += real
    return comparison, validation, samples, truncated


def check_plan(
    model: ModelConfig,
    precision: str,
    device: str,
    plan: RunnerLoader,
    reference: RunnerLoader,
    reference_name: str,
    data: DataLoader,
    settings: AccuracySettings,
) -> Verdict:
    """Judge the plan ``plan()`` loads against ``reference()`` on ``data(network_hw)``.
    Both loaders run on the check's low-priority thread, which closes what they return.
    A check that cannot run (a loader or the data fails) raises EdgedError."""
    result: Dict[str, Any] = {}
    started = time.monotonic()

    def work() -> None:
        _lower_this_thread()
        runners: List[Runner] = []
        try:
            runners.append(plan())
            runners.append(reference())
            deadline = time.monotonic() + settings.time_budget_s
            result["value"] = _compare(model, runners[0], runners[1], data, deadline)
        except Exception as exc:  # reported on the caller's thread
            result["error"] = exc
        finally:
            for runner in runners:
                runner.close()

    worker = threading.Thread(target=work, name=f"edged-accuracy-{model.name}", daemon=True)
    worker.start()
    worker.join(settings.time_budget_s + _SETUP_ALLOWANCE_S)
    if worker.is_alive():
        raise EdgedError(
            f"models.{model.name}.accuracy: the check did not finish within "
            f"{settings.time_budget_s + _SETUP_ALLOWANCE_S:g} s (time_budget_s plus setup)"
        )
    error: Optional[BaseException] = result.get("error")
    if error is not None:
        if isinstance(error, EdgedError):
            raise error
        raise EdgedError(f"models.{model.name}: the accuracy check failed: {type(error).__name__}: {error}") from error
    comparison, validation, samples, truncated = result["value"]
    figures = comparison.figures()
    limits = settings.thresholds_for(precision)
    failures = judge(figures, limits)
    data_doc = {
        "source": validation.source,
        "description": validation.description,
        "samples": samples,
        "digest": validation.digest,
    }
    verdict = Verdict(
        passed=not failures,
        precision=precision,
        device=device,
        reference=reference_name,
        data=data_doc,
        figures=figures,
        thresholds=limits.as_dict(),
        failures=failures,
        seconds=round(time.monotonic() - started, 3),
        truncated=truncated,
    )
    log.log(
        logging.INFO if verdict.passed else logging.WARNING,
        "model %s: accuracy check: %s",
        model.name,
        verdict.summary(),
    )
    return verdict
