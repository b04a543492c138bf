"""A stand-in for the daemon on edged's ControlHost surface (edged/control/host.py).

It runs no inference: its models are entries of the config in force, each reported as
running. An apply diffs the configs as the daemon does, takes ``apply_s`` (the time a
real device spends building and starting models), runs the caller's persist step and
switches, or, on a device told to fail, raises ApplyError so the push is rolled back.
Everything the control plane, the telemetry publisher and the presence answers do with
it is edged's real code.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Collection, List, Optional

from edged.config.effect import restart_required
from edged.config.model import Config
from edged.errors import ApplyError, EdgedError
from edged.fetch.progress import DownloadProgress
from edged.model_changes import Changes, diff_models
from edged.model_state import Counters, ModelState, RunningState

__all__ = ["StandInHost"]


class StandInHost:
    def __init__(self, config: Config, apply_s: float = 0.0, fail_applies: bool = False) -> None:
        self.config_listeners: List[Callable[[Config], None]] = []
        self.config_path: Optional[str] = None
        self.apply_s = apply_s
        self.fail_applies = fail_applies
        self.applied = 0
        self._config = config
        self._digest: Optional[str] = None
        self._source = "file"
        self._lock = threading.Lock()  # one apply at a time, as the daemon's change queue
        self._started = time.monotonic()

    @property
    def config(self) -> Config:
        return self._config

    @property
    def config_digest(self) -> Optional[str]:
        return self._digest

    def snapshot(self, latency: bool = True) -> RunningState:
        config = self._config
        counters = Counters(0, 0, {}, 0, 0, self._started)
        models = {m.name: ModelState(m.name, "", "cpu", m.batch, "running", counters=counters) for m in config.models}
        return RunningState(config, self._source, self._digest, time.monotonic(), models)

    def apply_config(
        self,
        new: Config,
        rebuild: Collection[str] = (),
        before_switch: Optional[Callable[[Changes], None]] = None,
        source: Optional[str] = None,
        digest: Optional[str] = None,
    ) -> Changes:
        with self._lock:
            old = self._config
            changes = diff_models(old, new, rebuild)
            time.sleep(self.apply_s)
            if self.fail_applies:
                raise ApplyError("stand-in: this simulated device fails every apply")
            if before_switch is not None:
                before_switch(changes)
            self._config = new
            self._source = source or self._source
            self._digest = digest
            self.applied += 1
            changes.restart_required = restart_required(old, new)
        for listener in list(self.config_listeners):
            listener(new)
        return changes

    def fetch(self, new: Config, on_progress: Optional[Callable[[DownloadProgress], None]] = None) -> None:
        """The stand-in downloads nothing: a push naming files by URL is refused, as a
        device that cannot reach the server would refuse it."""
        named = [m.name for m in new.models if m.remote_files]
        if named:
            raise EdgedError(f"stand-in: simulated devices download no files (models {named})")

    def reload(self) -> Changes:
        return diff_models(self._config, self._config)
