"""The daemon: turns a config into running model pipelines and reports on them."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import IO, Dict, List, Optional

from edged.backends import BuildOptions, get_backend
from edged.config.model import Config, ModelConfig
from edged.errors import BackendError, EdgedError
from edged.pipeline.model_pipeline import ModelPipeline
from edged.placement.service import Placer, local_target

__all__ = ["Daemon", "ModelSlot", "build_options"]

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 4.0


def resolve_device(model: ModelConfig) -> str:
    """The concrete device a model's plan targets on this host."""
    if model.backend == "onnxruntime":
        return "cpu" if model.device in ("auto", "cpu") else "gpu"
    return "gpu" if model.device == "auto" else model.device


def build_options(model: ModelConfig, device: Optional[str] = None) -> BuildOptions:
    return BuildOptions(
        precision=model.precision,
        device=device or resolve_device(model),
        gpu_fallback=model.gpu_fallback,
        batch=model.batch,
        threads=model.threads,
    )


@dataclass
class ModelSlot:
    """A configured model and what became of it."""

    config: ModelConfig
    pipeline: Optional[ModelPipeline] = None
    error: Optional[str] = None

    @property
    def state(self) -> str:
        if self.error:
            return "failed"
        return self.pipeline.state if self.pipeline else "starting"


class Daemon:
    def __init__(self, config: Config, status_stream: Optional[IO[str]] = None) -> None:
        self.config = config
        self.slots: Dict[str, ModelSlot] = {m.name: ModelSlot(m) for m in config.models}
        self.stop_event = threading.Event()
        self._status_stream = status_stream
        self._signals = 0
        # Which device each model's plan targets (DLA cores, GPU, CPU); see edged/placement.
        self.placer = Placer(local_target())
        self.placer.plan(config.models)

    # -- models ------------------------------------------------------------------------

    def load_model(self, model: ModelConfig) -> ModelPipeline:
        """Build, load and wire one model's pipeline (not started)."""
        backend = get_backend(model.backend)
        if not os.path.isfile(model.path):
            raise EdgedError(f"{model.path}: model file not found")
        options = build_options(model, self.placer.device_for(model.name))
        try:
            built = backend.build_plan(model.path, options)
        except BackendError as exc:
            if not options.device.startswith("dla"):
                raise
            # A failed DLA build moves the model to the GPU; the reason stays in placer.status().
            options = build_options(model, self.placer.fall_back(model.name, options.device, str(exc)))
            built = backend.build_plan(model.path, options)
        self.placer.observe(model.name, built.layer_placement)
        runner = backend.load_plan(built.plan, options)
        try:
            return ModelPipeline(model, runner)
        except Exception:
            runner.close()
            raise

    def start_models(self) -> None:
        for slot in self.slots.values():
            try:
                slot.pipeline = self.load_model(slot.config)
                slot.pipeline.start()
                log.info(
                    "model %s: serving (%s, %s)",
                    slot.config.name,
                    slot.config.backend,
                    self.placer.device_for(slot.config.name),
                )
            except EdgedError as exc:
                slot.error = str(exc)
                log.error("model %s: not serving: %s", slot.config.name, exc)

    def stop_models(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        pipelines = [s.pipeline for s in self.slots.values() if s.pipeline]
        # Stop every source first so all models drain in parallel within one timeout.
        for pipeline in pipelines:
            pipeline._stop_source.set()
        deadline = time.monotonic() + timeout
        drained = True
        for pipeline in pipelines:
            drained = pipeline.stop(max(0.1, deadline - time.monotonic())) and drained
        return drained

    # -- status ------------------------------------------------------------------------

    def status_lines(self) -> List[str]:
        lines = []
        for name, slot in self.slots.items():
            if slot.pipeline is None:
                lines.append(f"{name}: {slot.state}{': ' + slot.error if slot.error else ''}")
                continue
            stats = slot.pipeline.stats
            e2e = stats.latency["e2e"].snapshot()
            counters = stats.counters()
            dropped = sum(counters["dropped"].values())  # type: ignore[attr-defined]
            p50, p99 = e2e.percentile(50), e2e.percentile(99)
            lines.append(
                f"{name}: {slot.state} fps {stats.fps_since_last():.1f} "
                f"p50 {_ms(p50)} p99 {_ms(p99)} in {counters['frames_in']} "
                f"out {counters['frames_out']} dropped {dropped}"
            )
        return lines

    def _print_status(self) -> None:
        stream = self._status_stream or sys.stdout
        for line in self.status_lines():
            stream.write(line + "\n")
        stream.flush()

    # -- main loop ---------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        self._signals += 1
        if self._signals > 1:
            # Second signal: the operator does not want to wait for the drain.
            os._exit(1)
        log.info("received %s, draining", signal.Signals(signum).name)
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _all_finished(self) -> bool:
        pipelines = [s.pipeline for s in self.slots.values() if s.pipeline]
        return bool(pipelines) and all(p.finished for p in pipelines)

    def run(self, duration_s: Optional[float] = None) -> int:
        """Serve until a signal, ``duration_s``, or every (finite) source is exhausted."""
        self.start_models()
        period = self.config.telemetry.period_s
        started = time.monotonic()
        next_status = started + period
        while not self.stop_event.is_set():
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            if self._all_finished():
                break
            if now >= next_status:
                self._print_status()
                next_status += period
            self.stop_event.wait(min(0.2, max(0.0, next_status - now)))
        drained = self.stop_models()
        self._print_status()
        if not drained:
            log.warning("drain timed out; unfinished frames were counted as dropped")
        return 0


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}ms"
