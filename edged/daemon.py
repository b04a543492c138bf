"""The daemon: composes the running models, telemetry, the control plane and systemd, and
runs the main loop. Nothing but the CLI imports it (docs/architecture.md)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import IO, Callable, Collection, List, Optional

from edged.config.model import Config
from edged.control.binding import ControlBinding, start_control
from edged.control.transaction import apply_config
from edged.errors import EdgedError
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
        self._apply_lock = threading.Lock()
        self._reload_requested = threading.Event()
        self.systemd = ServiceHooks(lambda: self.models.snapshot(latency=False))

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
        """Put ``new`` in force atomically (see edged.control.transaction); on failure
        raise ApplyError and leave the running config, models and plans as they were.
        ``source``/``digest`` record where the new config came from."""
        with self._apply_lock:
            changes = apply_config(self.models, new, rebuild, before_switch, source, digest)
        for listener in list(self.config_listeners):
            try:
                listener(self.config)
            except Exception:
                log.exception("config listener failed")
        return changes

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
        period = self.config.telemetry.period_s
        started = time.monotonic()
        next_status = started + period
        while not self.stop_event.is_set():
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            if self._reload_requested.is_set():
                self._handle_reload_request()
            if self.models.all_finished():
                break
            self.systemd.tick(now)
            if now >= next_status:
                self._print_status()
                next_status += period
            self.stop_event.wait(min(0.2, max(0.0, next_status - now)))
        self.systemd.notifier.stopping()
        if control is not None:
            control.stop()
        drained = self.models.stop()
        self._print_status()
        if self.telemetry is not None:
            self.telemetry.stop()
        if not drained:
            log.warning("drain timed out; unfinished frames were counted as dropped")
        return 0
