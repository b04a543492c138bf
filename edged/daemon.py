"""The daemon: turns a config into running model pipelines and reports on them."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Callable, Collection, Dict, List, Optional, Tuple

import numpy as np

from edged.backends import BuildOptions, Runner, get_backend
from edged.config.model import Config, ModelConfig
from edged.errors import BackendError, EdgedError, PlacementError
from edged.pipeline.model_pipeline import ModelPipeline
from edged.pipeline.stats import ModelStats
from edged.placement.profiles import profile_from_dict
from edged.placement.service import Placer, local_target
from edged.plans import PlanKey, PlanManager, PlanProgress, PlanStore
from edged.platform import Platform, discover
from edged.platform.discover import probe_versions
from edged.systemd import ServiceHooks, log_fields

if TYPE_CHECKING:
    from edged.control.binding import ControlBinding
    from edged.control.transaction import Changes
    from edged.telemetry.service import TelemetryService

__all__ = ["Daemon", "ModelSlot", "build_options"]

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 4.0
# The benchmark of a plan right after its first load (for placement): short, since it delays
# the model's start once per plan.
PROFILE_WARMUP_S = 0.1
PROFILE_SECONDS = 0.4
# A fallback reason can carry a compiler's log; the status line keeps its start.
REASON_WIDTH = 100


def resolve_device(model: ModelConfig) -> str:
    """The concrete device a model's plan targets on this host."""
    if model.backend == "onnxruntime":
        return "cpu" if model.device in ("auto", "cpu") else "gpu"
    if model.backend == "opencv":
        return "cpu" if model.device in ("auto", "cpu") else model.device
    return "gpu" if model.device == "auto" else model.device


def build_options(model: ModelConfig, state_dir: Optional[str] = None, device: Optional[str] = None) -> BuildOptions:
    """``state_dir`` holds TensorRT's timing and calibration caches (the plan cache dir);
    ``device`` is placement's choice (default: the config's device resolved for the backend)."""
    trt = model.tensorrt
    extra: Dict[str, Any] = {}
    if model.calibration:
        extra["calibration_images"] = model.calibration["images"]
        extra["calibration_max_images"] = int(model.calibration.get("max_images", 0))
        extra["preprocess"] = dataclasses.asdict(model.preprocess)
    if model.backend == "tensorrt":
        if trt.get("dla_pools_kib"):
            extra["dla_pools"] = {k: int(v) * 1024 for k, v in trt["dla_pools_kib"].items()}
        if trt.get("layer_devices"):
            extra["layer_devices"] = dict(trt["layer_devices"])
        if state_dir:
            extra["state_dir"] = state_dir
    return BuildOptions(
        precision=model.precision,
        device=device or resolve_device(model),
        gpu_fallback=bool(trt.get("gpu_fallback", True)) and model.gpu_fallback,
        batch=model.batch,
        threads=model.threads,
        model_format=model.format,
        workspace_bytes=int(trt.get("workspace_mib", 1024)) << 20,
        extra=extra,
    )


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
        placer = placer or self.placer
        backend = get_backend(model.backend)
        if not os.path.isfile(model.path):
            raise EdgedError(f"{model.path}: model file not found")
        state_dir = self.config.plans.cache_dir
        options = build_options(model, state_dir, placer.device_for(model.name))
        try:
            runner, key = self.plans().obtain(model, backend, options, progress, rebuild)
        except BackendError as exc:
            if not options.device.startswith("dla"):
                raise
            # A failed DLA build moves the model to the GPU; the reason stays in placer.status().
            device = placer.fall_back(model.name, options.device, str(exc))
            options = build_options(model, state_dir, device)
            runner, key = self.plans().obtain(model, backend, options, progress, rebuild)
        placer.observe(model.name, self.plans().layer_placement(key))
        moved_to = self._profile(model, runner, key, options.device, placer)
        if moved_to is not None:
            # Measured over its latency budget on a DLA: serve from the device placement chose now.
            runner.close()
            self.plans().release(key)
            options = build_options(model, state_dir, moved_to)
            runner, key = self.plans().obtain(model, backend, options, progress, rebuild)
            # Profiled too, for placement's later decisions; one move per load, so no ping-pong.
            self._profile(model, runner, key, moved_to, placer)
        extras = self._extra_instances(model, backend, state_dir, options.device, placer, rebuild)
        try:
            pipeline = ModelPipeline(
                model, runner, ModelStats(window_s=self.config.telemetry.window_s), [r for r, _, _ in extras]
            )
        except Exception:
            for each_runner, each_key, _ in [(runner, key, options.device), *extras]:
                each_runner.close()
                self.plans().release(each_key)
            raise
        pipeline.plan_key = key
        pipeline.extra_plan_keys = [k for _, k, _ in extras]
        pipeline.devices = [options.device, *(d for _, _, d in extras)]
        if self.telemetry is not None and model.publish_results_hz > 0:
            from edged.telemetry.results import ResultsPublisher

            pipeline.results_hook = ResultsPublisher(self.telemetry.link, model.name, model.publish_results_hz)
        return pipeline

    def _extra_instances(
        self, model: ModelConfig, backend: Any, state_dir: str, first: str, placer: Placer, rebuild: bool
    ) -> List[Tuple[Runner, PlanKey, str]]:
        """Runners for the other devices placement gave ``model`` (e.g. dla1 next to dla0).
        One that cannot be built or loaded is left out: the model serves on fewer engines."""
        devices = placer.devices_for(model.name)
        if devices[0] != first:
            return []  # the model moved (a fallback): serve it where it went
        extras: List[Tuple[Runner, PlanKey, str]] = []
        for device in devices[1:]:
            try:
                runner, key = self.plans().obtain(
                    model, backend, build_options(model, state_dir, device), None, rebuild
                )
                extras.append((runner, key, device))
            except EdgedError as exc:
                log.warning("model %s: no engine instance on %s: %s", model.name, device, exc)
        return extras

    def _profile(self, model: ModelConfig, runner: Runner, key: PlanKey, device: str, placer: Placer) -> Optional[str]:
        """Feed placement the plan's measured latency: a short benchmark right after the first
        load, stored in the plan's manifest so later starts reuse it. Returns the device the
        model must move to, or None."""
        estimate = placer.estimate(model.name, device)
        if estimate is None:
            return None
        doc = self.plans().profile(key)
        if doc is None:
            from edged.bench import measure

            timing = measure(runner, model.batch, warmup_s=PROFILE_WARMUP_S, duration_s=PROFILE_SECONDS)
            latency_ms = float(np.median(timing["samples_ms"])) if timing["samples_ms"] else estimate.latency_ms
            doc = dict(dataclasses.replace(estimate, latency_ms=latency_ms, source="measured").as_dict())
            try:
                self.plans().record_profile(key, doc)
            except EdgedError as exc:
                log.warning("model %s: measured profile not stored: %s", model.name, exc)
        profile = profile_from_dict(dict(doc, model=model.name, device=device))
        log.info("model %s: %.2f ms per batch on %s (measured)", model.name, profile.latency_ms, device)
        return placer.measured(profile)

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

    def status_lines(self) -> List[str]:
        lines = []
        for name, slot in self.slots.items():
            device = self.device_of(name)
            if slot.pipeline is None:
                lines.append(f"{name}: {slot.state} on {device}{': ' + slot.error if slot.error else ''}")
            else:
                stats = slot.pipeline.stats
                e2e = stats.latency["e2e"].snapshot()
                counters = stats.counters()
                dropped = sum(counters["dropped"].values())
                p50, p99 = e2e.percentile(50), e2e.percentile(99)
                lines.append(
                    f"{name}: {slot.state} on {device} fps {stats.fps_since_last():.1f} "
                    f"p50 {_ms(p50)} p99 {_ms(p99)} in {counters['frames_in']} "
                    f"out {counters['frames_out']} dropped {dropped}"
                )
            fallback = self.fallback_text(name)
            if fallback:
                lines.append(f"  {name}: {fallback}")
        return lines

    def fallback_text(self, name: str) -> Optional[str]:
        """``fell back from dla0: <why>`` when a model left its placed device at run time."""
        status = self.placer.status(name)
        left = status.get("fell_back_from")
        if left is None:
            return None
        why = " ".join(str(status["not_on"].get(left, "")).split())
        path = self.slots[name].config.path
        if why.startswith(path + ": "):
            why = why[len(path) + 2 :]  # backend errors lead with the model's path; the name says it
        if len(why) > REASON_WIDTH:
            why = why[: REASON_WIDTH - 3] + "..."
        return f"fell back from {left}: {why}"

    def status_summary(self) -> str:
        """One line for systemd's STATUS=: models serving, and each plan still in progress."""
        serving = [n for n, s in self.slots.items() if s.pipeline is not None and s.pipeline.state == "running"]
        parts = [f"{len(serving)}/{len(self.slots)} models serving"]
        for name, slot in self.slots.items():
            if slot.pipeline is None:
                parts.append(f"{name}: {slot.state}")
        return "; ".join(parts)

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


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}ms"
