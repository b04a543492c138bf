"""The daemon: turns a config into running model pipelines and reports on them."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Callable, Collection, Dict, List, Optional

from edged.config.model import Config, ModelConfig
from edged.errors import EdgedError, PlacementError
from edged.model_loading import load_pipeline, resolve_device
from edged.pipeline.model_pipeline import ModelPipeline
from edged.placement.service import Placer, local_target
from edged.plans import PlanManager, PlanProgress, PlanStore
from edged.platform import Platform, discover
from edged.platform.discover import probe_versions
from edged.status import status_lines
from edged.systemd import ServiceHooks, log_fields

if TYPE_CHECKING:
    from edged.control.binding import ControlBinding
    from edged.control.transaction import Changes
    from edged.telemetry.service import TelemetryService

__all__ = ["Daemon", "ModelSlot"]

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 4.0


@dataclass
class ModelSlot:
    """A configured model and what became of it."""

    config: ModelConfig
    pipeline: Optional[ModelPipeline] = None
    error: Optional[str] = None
    plan: PlanProgress = field(default_factory=PlanProgress)

    @property
    def state(self) -> str:
        if self.error:
            return "failed"
        return self.pipeline.state if self.pipeline else self.plan.describe()


class Daemon:
    def __init__(
        self, config: Config, status_stream: Optional[IO[str]] = None, config_path: Optional[str] = None
    ) -> None:
        self.config = config
        self.slots: Dict[str, ModelSlot] = {m.name: ModelSlot(m) for m in config.models}
        self.stop_event = threading.Event()
        self._status_stream = status_stream
        self._signals = 0
        self.telemetry: Optional["TelemetryService"] = None
        self._platform: Optional[Platform] = None
        self._plans: Optional[PlanManager] = None
        self._builder: Optional[threading.Thread] = None
        # The local file reload() re-reads; None when the config did not come from a file.
        self.config_path = config_path
        # Called with the new config after every successful apply (push, reload, rebuild).
        self.config_listeners: List[Callable[[Config], None]] = []
        # Where the config in force came from ("file" or "pushed") and the digest of the
        # push that set it, for config/state and duplicate detection.
        self.config_source = "file"
        self.config_digest: Optional[str] = None
        self._apply_lock = threading.Lock()
        self._reload_requested = threading.Event()
        self.systemd = ServiceHooks(self)
        # Which device each model's plan targets (DLA cores, GPUs, CPU); see edged/placement.
        self.placer = Placer(local_target(self.platform))
        self.placer.plan(config.models)

    # -- models ------------------------------------------------------------------------

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            if any(resolve_device(m) != "cpu" for m in self.config.models):
                self._platform = discover()
            else:
                # CPU-only configs never touch CUDA: a GPU context would cost >100 MB of RAM.
                self._platform = discover(versions=lambda: probe_versions(cuda=False), gpu_probe=list)
        return self._platform

    def plans(self) -> PlanManager:
        """The plan cache; raises PlanError naming the directory when it is unusable."""
        if self._plans is None:
            plans = self.config.plans
            store = PlanStore(plans.cache_dir, plans.max_size_mb << 20, plans.max_plans)
            self._plans = PlanManager(store, self.platform)
        return self._plans

    def load_model(
        self,
        model: ModelConfig,
        progress: Optional[PlanProgress] = None,
        placer: Optional[Placer] = None,
        rebuild: bool = False,
    ) -> ModelPipeline:
        """Plan (cached or built; ``rebuild``: built anew), runner and pipeline for one model
        (not started). ``placer``: the placement of a config being applied (default: the one
        in force)."""
        pipeline = load_pipeline(self.plans(), model, placer or self.placer, self.config, progress, rebuild)
        if self.telemetry is not None and model.publish_results_hz > 0:
            from edged.telemetry.results import ResultsPublisher

            pipeline.results_hook = ResultsPublisher(self.telemetry.link, model.name, model.publish_results_hz)
        return pipeline

    def start_models(self) -> None:
        """Plans are obtained one model at a time on a background thread (builds are CPU and
        memory heavy on a Jetson); each model serves as soon as its own plan is ready."""
        builder = threading.Thread(target=self._build_and_start, name="edged-plans", daemon=True)
        builder.start()
        self._builder = builder

    def _build_and_start(self) -> None:
        for slot in list(self.slots.values()):
            if self.stop_event.is_set():
                return
            try:
                pipeline = self.load_model(slot.config, slot.plan)
                if self.stop_event.is_set():
                    pipeline.close_runners()
                    return
                slot.pipeline = pipeline
                pipeline.start()
                device = self.placer.device_for(slot.config.name)
                log.info(
                    "model %s: serving (%s, %s, plan from %s)",
                    slot.config.name,
                    slot.config.backend,
                    device,
                    slot.plan.source,
                    extra=log_fields(slot.config.name, device, _key_text(pipeline.plan_key)),
                )
            except EdgedError as exc:
                slot.error = str(exc)
                slot.plan.state = "failed"
                slot.plan.error = str(exc)
                log.error("model %s: not serving: %s", slot.config.name, exc, extra=log_fields(slot.config.name))

    def wait_started(self, timeout: Optional[float] = None) -> bool:
        """Wait until every model is serving or has failed; True when that happened in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._builder is None:  # run() has not reached start_models yet
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        self._builder.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self._builder.is_alive()

    def start_telemetry(self) -> Optional["ControlBinding"]:
        """The MQTT link, telemetry and the control plane, when the config has an mqtt
        section; returns the control plane (None without MQTT or when it is disabled)."""
        from edged.control.binding import start_control
        from edged.telemetry.service import TelemetryService

        self.telemetry = TelemetryService.maybe(self)
        if self.telemetry is None:
            return None
        # The control plane subscribes before the link connects: subscriptions go out on connect.
        control = start_control(self)
        self.telemetry.start()
        return control

    def stop_models(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        if self._builder is not None:
            # A build in progress cannot be interrupted; no model starts after the stop.
            self._builder.join(0.5)
        pipelines = [s.pipeline for s in self.slots.values() if s.pipeline]
        # Stop every source first so all models drain in parallel within one timeout.
        for pipeline in pipelines:
            pipeline._stop_source.set()
        deadline = time.monotonic() + timeout
        drained = True
        for pipeline in pipelines:
            drained = pipeline.stop(max(0.1, deadline - time.monotonic())) and drained
        return drained

    # -- applying a new config ------------------------------------------------------------

    def apply_config(
        self,
        new: Config,
        rebuild: Collection[str] = (),
        before_switch: Optional[Callable[[Changes], None]] = None,
        source: Optional[str] = None,
        digest: Optional[str] = None,
    ) -> Changes:
        """Put ``new`` in force atomically (see edged.control.transaction); on failure
        raise ApplyError and leave the running config, models and plans as they were.
        ``source``/``digest`` record where the new config came from."""
        from edged.control.transaction import apply_config

        with self._apply_lock:
            if self._builder is not None:
                # The first plans are still being built: apply on top of them, not beside them.
                self._builder.join()
            changes = apply_config(self, new, rebuild, before_switch)
            if source is not None:
                self.config_source, self.config_digest = source, digest
        for listener in list(self.config_listeners):
            try:
                listener(self.config)
            except Exception:
                log.exception("config listener failed")
        return changes

    def _switch(self, config: Config, slots: Dict[str, ModelSlot], placer: Placer) -> None:
        # Readers (status, telemetry) pick up either the old or the new pair: assign the
        # slots first, they are what the main loop iterates.
        self.slots = slots
        self.placer = placer
        self.config = config

    def release_plan(self, pipeline: ModelPipeline) -> None:
        """A retired pipeline's plans may be evicted again (the store holds plans in use)."""
        if self._plans is None:
            return
        for key in [pipeline.plan_key, *pipeline.extra_plan_keys]:
            if key is not None:
                self._plans.release(key)

    def reload(self) -> None:
        """Re-read the local config file (layered with the persisted push, as at boot) and
        apply it like a push. Raises EdgedError naming the cause; the previous config then
        stays in force."""
        if not self.config_path:
            raise EdgedError("reload: this daemon was not started from a config file")
        from edged.control.boot import load_effective

        effective = load_effective(self.config_path)
        log.info("reloading %s (%s config, version %d)", self.config_path, effective.source, effective.config.version)
        self.apply_config(effective.config, source=effective.source, digest=effective.digest)

    def _handle_reload_request(self) -> None:
        self._reload_requested.clear()
        self.systemd.notifier.reloading()
        log.info("reload requested (SIGHUP)")
        try:
            self.reload()
        except EdgedError as exc:
            log.error("reload failed, previous config stays in force: %s", exc)
        finally:
            self.systemd.ready()

    # -- status ------------------------------------------------------------------------

    def device_of(self, name: str) -> str:
        """The device a configured model's plan targets: placement's, else the config's."""
        try:
            return self.placer.device_for(name)
        except PlacementError:
            return resolve_device(self.slots[name].config)

    def _print_status(self) -> None:
        stream = self._status_stream or sys.stdout
        for line in status_lines(self):
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
        signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_reload_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        # Applying builds plans and drains pipelines: the main loop does it, not the handler
        # (a signal handler must not take locks or do I/O).
        self._reload_requested.set()

    def _all_finished(self) -> bool:
        if self._builder is not None and self._builder.is_alive():
            return False
        pipelines = [s.pipeline for s in self.slots.values() if s.pipeline]
        return bool(pipelines) and all(p.finished for p in pipelines)

    def run(self, duration_s: Optional[float] = None) -> int:
        """Serve until a signal, ``duration_s``, or every (finite) source is exhausted."""
        control = self.start_telemetry()
        self.start_models()
        # Ready once the config is loaded and telemetry and the control plane are up; plan
        # builds go on and show in STATUS=.
        self.systemd.ready()
        period = self.config.telemetry.period_s
        started = time.monotonic()
        next_status = started + period
        while not self.stop_event.is_set():
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            if self._reload_requested.is_set():
                self._handle_reload_request()
            if self._all_finished():
                break
            self.systemd.tick(now)
            if now >= next_status:
                self._print_status()
                next_status += period
            self.stop_event.wait(min(0.2, max(0.0, next_status - now)))
        self.systemd.notifier.stopping()
        if control is not None:
            control.stop()
        drained = self.stop_models()
        self._print_status()
        if self.telemetry is not None:
            self.telemetry.stop()
        if not drained:
            log.warning("drain timed out; unfinished frames were counted as dropped")
        return 0


def _key_text(key: Any) -> Optional[str]:
    if key is None:
        return None
    return str(getattr(key, "name", None) or key)
