"""The daemon: composes the running models, telemetry, the control plane and systemd, and
runs the main loop. Nothing but the CLI imports it (docs/architecture.md)."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import IO, Any, Callable, Collection, List, Mapping, Optional, Set

from edged.change_queue import ChangeQueue
from edged.config.effect import restart_required
from edged.config.model import Config
from edged.control.binding import ControlBinding, start_control
from edged.control.settings import control_settings
from edged.control.store import ConfigStore
from edged.control.transaction import apply_config
from edged.errors import ConfigError, EdgedError
from edged.fetch import DownloadProgress, collect, download_settings, referenced_hashes
from edged.model_changes import Changes
from edged.model_loading import platform_for
from edged.model_set import ModelSet
from edged.model_state import OutputRates, RunningState
from edged.pipeline.model_pipeline import ModelPipeline
from edged.service_hooks import ServiceHooks
from edged.status import status_lines
from edged.telemetry.results import ResultsPublisher
from edged.telemetry.service import TelemetryService

__all__ = ["Daemon"]

log = logging.getLogger(__name__)

# How often the main loop queues a garbage collection of the model store.
STORE_GC_PERIOD_S = 3600.0


class Daemon:
    def __init__(
        self,
        config: Config,
        status_stream: Optional[IO[str]] = None,
        config_path: Optional[str] = None,
        source: str = "file",
        digest: Optional[str] = None,
    ) -> None:
        """``source``/``digest``: where ``config`` came from ("file" or "pushed", and the
        digest of that push), for config/state and duplicate detection."""
        self.models = ModelSet(config, platform_for(config.models), source, digest)
        self.stop_event = threading.Event()
        self._status_stream = status_stream
        self._status_rates = OutputRates(since_start=True)
        self._signals = 0
        self.telemetry: Optional[TelemetryService] = None
        # The local file reload() re-reads; None when the config did not come from a file.
        self.config_path = config_path
        # Called with the new config after every successful apply (push, reload, rebuild).
        self.config_listeners: List[Callable[[Config], None]] = []
        # Every change to the running models, in order, off the main loop (edged/change_queue.py).
        self.changes = ChangeQueue()
        self._reload_requested = threading.Event()
        self.systemd = ServiceHooks(lambda: self.models.snapshot(latency=False))
        # Hashes a push has fetched and not yet put in force: never garbage.
        self._pinned: Set[str] = set()
        self._last_gc = 0.0

    # -- the running state -------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.models.config

    @property
    def config_digest(self) -> Optional[str]:
        return self.models.digest

    def snapshot(self, latency: bool = True) -> RunningState:
        return self.models.snapshot(latency)

    # -- telemetry and control -------------------------------------------------------------

    def start_telemetry(self) -> Optional[ControlBinding]:
        """The MQTT link, telemetry and the control plane, when the config has an mqtt
        section; returns the control plane (None without MQTT or when it is disabled)."""
        self.telemetry = TelemetryService.maybe(self.config, self.snapshot)
        if self.telemetry is None:
            return None
        self.models.pipeline_hooks.append(self._publish_results)
        self.config_listeners.append(self.telemetry.configure)
        # The control plane subscribes before the link connects: subscriptions go out on connect.
        control = start_control(self, self.telemetry.link)
        self.telemetry.start()
        return control

    def _publish_results(self, pipeline: ModelPipeline) -> None:
        model = pipeline.model
        if self.telemetry is not None and model.publish_results_hz > 0:
            pipeline.results_hook = ResultsPublisher(self.telemetry.link, model.name, model.publish_results_hz)

    # -- applying a new config ---------------------------------------------------------------

    def apply_config(
        self,
        new: Config,
        rebuild: Collection[str] = (),
        before_switch: Optional[Callable[[Changes], None]] = None,
        source: Optional[str] = None,
        digest: Optional[str] = None,
    ) -> Changes:
        """Put ``new`` in force atomically (see edged.control.transaction), in turn with every
        other change; on failure raise ApplyError and leave the running config, models and
        plans as they were. ``source``/``digest`` record where the new config came from.
        The returned changes name the keys that take effect only at the next start."""
        job = functools.partial(self._apply_now, new, rebuild, before_switch, source, digest)
        return self.changes.run("apply", job)

    def _apply_now(
        self,
        new: Config,
        rebuild: Collection[str],
        before_switch: Optional[Callable[[Changes], None]],
        source: Optional[str],
        digest: Optional[str],
    ) -> Changes:
        old = self.config
        try:
            changes = apply_config(self.models, new, rebuild, before_switch, source, digest)
        finally:
            self._pinned = set()
        changes.restart_required = restart_required(old, new)
        if changes.restart_required:
            log.warning(
                "config version %d: changes to %s take effect at the next start",
                new.version,
                ", ".join(changes.restart_required),
            )
        for listener in list(self.config_listeners):
            try:
                listener(self.config)
            except Exception:
                log.exception("config listener failed")
        self.collect_store()
        return changes

    # -- model files fetched by URL (docs/downloads.md) ---------------------------------------

    def fetch(self, new: Config, on_progress: Optional[Callable[[DownloadProgress], None]] = None) -> None:
        """Download, or find and verify, every file ``new`` names by URL, on the caller's
        thread: the control plane calls it before the push takes its turn on the change
        queue, so reloads, restarts and the models in force never wait on the network.
        Bounded by control.downloads.deadline_s; raises FetchError naming the cause."""
        settings = download_settings(new.document)
        deadline = time.monotonic() + settings.deadline_s
        self._pinned = {r.sha256 for m in new.models for r in m.sources}
        try:
            for model in new.models:
                self.models.fetcher.ensure(model.name, model.sources, settings, deadline, on_progress)
        except BaseException:
            self._pinned = set()
            raise

    def _documents(self) -> List[Optional[Mapping[str, Any]]]:
        """The config in force, the persisted push and the local file: what the store keeps."""
        record = ConfigStore(control_settings(self.config).state_dir).load()
        local: Optional[Mapping[str, Any]] = None
        if self.config_path:
            from edged.config.loader import load_config

            try:
                local = load_config(self.config_path).document
            except ConfigError as exc:
                log.warning("store: cannot read %s for what it refers to: %s", self.config_path, exc)
        return [self.config.document, record["document"] if record else None, local]

    def collect_store(self, grace_s: Optional[float] = None) -> List[str]:
        """Remove store files no config refers to, unused for ``grace_s`` (default:
        control.downloads.gc_grace_s); returns what was removed."""
        settings = download_settings(self.config.document)
        referenced = referenced_hashes(self._documents()) | self._pinned
        grace = settings.gc_grace_s if grace_s is None else grace_s
        try:
            return collect(settings.store_dir, referenced, grace, active=self.models.fetcher.active)
        except OSError as exc:
            log.error("store: garbage collection in %s failed: %s", settings.store_dir, exc)
            return []

    def reload(self) -> Changes:
        """Re-read the local config file (layered with the persisted push, as at boot) and
        apply it like a push, in turn with every other change: it reads the file and the
        persisted push only after the changes queued before it are persisted and in force.
        Raises EdgedError naming the cause; the previous config then stays in force."""
        return self.changes.run("reload", self._reload_now)

    def _reload_now(self) -> Changes:
        if not self.config_path:
            raise EdgedError("reload: this daemon was not started from a config file")
        from edged.control.boot import load_effective

        effective = load_effective(self.config_path)
        in_force = self.config.version
        if effective.config.version < in_force:
            # Versions only go forward: an older file (or a lost persisted push) must not
            # roll back the config in force.
            raise EdgedError(
                f"reload: {self.config_path} gives version {effective.config.version} ({effective.source}), "
                f"older than version {in_force} in force; raise `version` in the file to take precedence"
            )
        log.info("reloading %s (%s config, version %d)", self.config_path, effective.source, effective.config.version)
        return self._apply_now(effective.config, (), None, effective.source, effective.digest)

    def request_reload(self) -> None:
        """Queue a reload without waiting (SIGHUP); a second request while one waits adds nothing."""
        self.changes.submit("reload", self._reload_job, coalesce=True)

    def _reload_job(self) -> None:
        self.systemd.notifier.reloading()
        log.info("reload requested (SIGHUP)")
        try:
            self._reload_now()
        except EdgedError as exc:
            log.error("reload failed, previous config stays in force: %s", exc)
        finally:
            self.systemd.ready()

    def _handle_reload_request(self) -> None:
        self._reload_requested.clear()
        self.request_reload()

    def _supervise(self, now: float) -> None:
        """Queue a fresh pipeline for every model whose inference or output worker is stuck;
        the restart runs in turn with config changes, never on the main loop."""
        for name, reason in self.models.stuck(now).items():
            self.changes.submit(f"restart {name}", functools.partial(self.models.restart, name, reason), coalesce=True)
        if now - self._last_gc >= STORE_GC_PERIOD_S:
            self._last_gc = now
            self.changes.submit("store gc", self.collect_store, coalesce=True)

    # -- main loop ---------------------------------------------------------------------------

    def _print_status(self) -> None:
        stream = self._status_stream or sys.stdout
        for line in status_lines(self.models.snapshot(), self._status_rates):
            stream.write(line + "\n")
        stream.flush()

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

    def run(self, duration_s: Optional[float] = None) -> int:
        """Serve until a signal, ``duration_s``, or every (finite) source is exhausted."""
        control = self.start_telemetry()
        self.models.start()
        # Ready once the config is loaded and telemetry and the control plane are up; plan
        # builds go on and show in STATUS=.
        self.systemd.ready()
        started = time.monotonic()
        last_status = started
        while not self.stop_event.is_set():
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            if self._reload_requested.is_set():
                self._handle_reload_request()
            if self.models.all_finished() and not self.changes.busy:
                break
            self._supervise(now)
            self.systemd.tick(now)
            # Read every turn: a pushed telemetry.period_s takes effect at once.
            next_status = last_status + self.config.telemetry.period_s
            if now >= next_status:
                self._print_status()
                last_status = now
                next_status = now + self.config.telemetry.period_s
            self.stop_event.wait(min(0.2, max(0.0, next_status - now)))
        self.systemd.notifier.stopping()
        if control is not None:
            control.stop()
        self.changes.stop()
        drained = self.models.stop()
        self._print_status()
        if self.telemetry is not None:
            self.telemetry.stop()
        if not drained:
            log.warning("drain timed out; unfinished frames were counted as dropped")
        return 0
