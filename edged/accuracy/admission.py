"""Admit a plan only once it computes what the model computes: the accuracy gate between
building a plan and serving from it, and the ladder a refused plan falls back along.

The ladder: INT8 -> FP16 -> FP32 on the same device. The DLA runs FP16 and INT8 only, so a
DLA plan steps INT8 -> FP16 on the DLA and then leaves for the GPU (through placement, like
a failed DLA build), where the ladder goes on from the last precision tried. FP32 on the
reference's own terms (a GPU or CPU FP32 plan) is not checked: it is the reference.

Each verdict is stored in its plan's manifest; the next start re-judges it with the
config's limits instead of running the check again, unless the validation data changed.
What was refused and why reaches placement's status (status lines, telemetry) through
``Placer.record_accuracy``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from edged.accuracy.gate import check_plan
from edged.accuracy.settings import AccuracySettings, needs_gate, settings_for
from edged.accuracy.validation import ValidationSet, select_validation
from edged.accuracy.verdict import Verdict
from edged.backends.base import Backend, BuildOptions, Runner
from edged.config.model import ModelConfig
from edged.errors import BackendUnavailable, EdgedError, PlacementError
from edged.placement.service import Placer
from edged.plans import PlanKey, PlanManager, PlanProgress

__all__ = ["PlanGate", "ladder_after", "AccuracyRefused"]

log = logging.getLogger(__name__)

_LOWER = {"int8": "fp16", "fp16": "fp32"}

OptionsFor = Callable[[str, str], BuildOptions]  # (device, precision) -> build options


class AccuracyRefused(EdgedError):
    """A plan failed its accuracy check and no step of the ladder was left to take."""


def ladder_after(precision: str, device: str) -> Tuple[Optional[str], bool]:
    """The precision to try next after ``precision`` on ``device`` was refused, and whether
    the model must leave the device for it (a DLA has no FP32)."""
    lower = _LOWER.get(precision)
    if device.startswith("dla"):
        if lower == "fp16":
            return lower, False
        return precision, True
    return lower, False


class PlanGate:
    """``obtain`` = :meth:`PlanManager.obtain`, then the accuracy check and the ladder."""

    def __init__(self, plans: PlanManager, placer: Placer, cache_dir: str, options_for: OptionsFor) -> None:
        self.plans = plans
        self.placer = placer
        self.cache_dir = cache_dir
        self.options_for = options_for

    def obtain(
        self,
        model: ModelConfig,
        backend: Backend,
        options: BuildOptions,
        progress: Optional[PlanProgress] = None,
        rebuild: bool = False,
        fall_back: bool = True,
    ) -> Tuple[Runner, PlanKey, BuildOptions]:
        """A runner whose plan passed the check (or needs none), its key and its options.
        ``fall_back``: step down the ladder on a refusal (else raise AccuracyRefused)."""
        refused: List[Dict[str, str]] = []
        last: Optional[Verdict] = None
        while True:
            runner, key = self.plans.obtain(model, backend, options, progress, rebuild)
            if not needs_gate(options.precision, options.device):
                break
            try:
                last = self.verdict(model, backend, options, key, runner)
            except BaseException:
                runner.close()
                self.plans.release(key)
                raise
            if last.passed:
                break
            runner.close()
            self.plans.release(key)
            why = f"accuracy check failed: {last.reason()}"
            refused.append({"device": options.device, "precision": options.precision, "why": why})
            precision, leave = ladder_after(options.precision, options.device)
            if not fall_back or precision is None:
                self._record(model, options, last, refused)
                raise AccuracyRefused(f"models.{model.name}: {options.precision} plan on {options.device}: {why}")
            try:
                device = self.placer.fall_back(model.name, options.device, why) if leave else options.device
            except PlacementError as exc:  # the config allows no other device
                self._record(model, options, last, refused)
                raise AccuracyRefused(f"models.{model.name}: {why}; and no device to fall back to: {exc}") from exc
            log.warning("model %s: %s; trying %s on %s", model.name, why, precision, device)
            options = self.options_for(device, precision)
        if fall_back:
            self._record(model, options, last, refused)
        return runner, key, options

    def _record(
        self, model: ModelConfig, options: BuildOptions, verdict: Optional[Verdict], refused: List[Dict[str, str]]
    ) -> None:
        if verdict is None and not refused:
            self.placer.record_accuracy(model.name, None)  # fp32 as configured: nothing to report
            return
        doc: Dict[str, Any] = {"precision": options.precision, "configured_precision": model.precision}
        if verdict is not None and verdict.precision == options.precision and verdict.device == options.device:
            doc.update(verdict="passed" if verdict.passed else "failed", figures=verdict.headline())
            doc["data"] = verdict.data.get("source")
        else:
            doc["verdict"] = "not checked: fp32 is the reference"
        if refused:
            doc["refused"] = refused
        self.placer.record_accuracy(model.name, doc)

    def recheck(
        self, model: ModelConfig, backend: Backend, options: BuildOptions
    ) -> List[Tuple[str, Optional[Verdict]]]:
        """Check the cached plans of ``model`` again (no cached verdict, nothing built), down
        the ladder from ``options`` until one passes or needs no check: one row per plan,
        its name and verdict (None: fp32, the reference itself). Stops at a missing plan."""
        rows: List[Tuple[str, Optional[Verdict]]] = []
        while True:
            key = self.plans.key(model, backend, options)
            plan = self.plans.store.get(key)
            if plan is None:
                raise EdgedError(
                    f"models.{model.name}: no {options.precision} plan for {options.device} in the cache "
                    "(`edged plan build` builds it)"
                )
            if not needs_gate(options.precision, options.device):
                rows.append((key.name, None))
                return rows
            runner = backend.load_plan(plan, options)
            try:
                verdict = self.verdict(model, backend, options, key, runner, force=True)
            finally:
                runner.close()
            rows.append((key.name, verdict))
            precision, leave = ladder_after(options.precision, options.device)
            if verdict.passed or precision is None:
                return rows
            options = self.options_for("gpu" if leave else options.device, precision)

    # -- one check ----------------------------------------------------------------------

    def verdict(
        self,
        model: ModelConfig,
        backend: Backend,
        options: BuildOptions,
        key: PlanKey,
        runner: Runner,
        force: bool = False,
    ) -> Verdict:
        """The stored verdict of ``key``'s plan when it was reached on the same data
        (re-judged with the config's limits), else a fresh check, stored in the manifest."""
        from edged.pipeline.preprocess import Preprocessor

        settings = settings_for(model)
        limits = settings.thresholds_for(options.precision)
        net_hw = Preprocessor(model.preprocess, runner.inputs[0]).hw
        validation = select_validation(model, settings, self.cache_dir, net_hw)
        stored = Verdict.from_dict(self.plans.accuracy(key) or {})
        if stored is not None and not force and stored.data.get("digest") == validation.digest:
            verdict = stored.rejudged(limits)
            if verdict.thresholds != stored.thresholds:
                self._store(model, key, verdict)
            return verdict
        verdict = self._check(model, backend, options, key, settings, validation)
        self._store(model, key, verdict)
        return verdict

    def _store(self, model: ModelConfig, key: PlanKey, verdict: Verdict) -> None:
        try:
            self.plans.record_accuracy(key, verdict.as_dict())
        except EdgedError as exc:
            log.warning("model %s: accuracy verdict not stored with the plan: %s", model.name, exc)

    def _check(
        self,
        model: ModelConfig,
        backend: Backend,
        options: BuildOptions,
        key: PlanKey,
        settings: AccuracySettings,
        validation: ValidationSet,
    ) -> Verdict:
        plan = self.plans.plan_bytes(key)
        light = dataclasses.replace(options, threads=settings.threads)
        reference, reference_name = self._reference(model, backend, settings)
        return check_plan(
            model,
            options.precision,
            options.device,
            lambda: backend.load_plan(plan, light),
            reference,
            reference_name,
            lambda _hw: validation,
            settings,
        )

    def _reference(
        self, model: ModelConfig, backend: Backend, settings: AccuracySettings
    ) -> Tuple[Callable[[], Runner], str]:
        """ONNX Runtime on the CPU with the original model; where ONNX Runtime is absent (a
        Jetson without it) or the model is not ONNX, the GPU FP32 plan."""
        if model.format.type == "onnx":
            try:
                from edged.backends import get_backend

                ort = get_backend("onnxruntime")
            except BackendUnavailable:
                pass
            else:
                with open(model.path, "rb") as handle:
                    original = handle.read()
                cpu = BuildOptions(device="cpu", threads=settings.threads)
                return (lambda: ort.load_plan(original, cpu)), "onnxruntime fp32 on the cpu, the original model"
        options = self.options_for("gpu", "fp32")

        def gpu_fp32() -> Runner:
            runner, key = self.plans.obtain(model, backend, dataclasses.replace(options, threads=settings.threads))
            self.plans.release(key)
            return runner

        return gpu_fp32, f"{backend.name} fp32 plan on the gpu"
