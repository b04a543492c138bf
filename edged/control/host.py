"""What the control plane needs of whoever runs the models (the daemon): the config in
force, a running-state snapshot, and applying or reloading a config. A Protocol, so the
plane depends on this small surface and not on the daemon."""

from __future__ import annotations

from typing import Callable, Collection, List, Optional, Protocol

from edged.config.model import Config
from edged.fetch.progress import DownloadProgress
from edged.model_changes import Changes
from edged.model_state import RunningState

__all__ = ["ControlHost"]


class ControlHost(Protocol):
    config_listeners: List[Callable[[Config], None]]
    config_path: Optional[str]  # the local config file, when there is one

    @property
    def config(self) -> Config: ...

    @property
    def config_digest(self) -> Optional[str]: ...

    def snapshot(self, latency: bool = True) -> RunningState: ...

    def apply_config(
        self,
        new: Config,
        rebuild: Collection[str] = (),
        before_switch: Optional[Callable[[Changes], None]] = None,
        source: Optional[str] = None,
        digest: Optional[str] = None,
    ) -> Changes: ...

    def fetch(self, new: Config, on_progress: Optional[Callable[[DownloadProgress], None]] = None) -> None:
        """Every file ``new`` names by URL downloaded or found, and verified; raises
        EdgedError naming the model, field, URL and cause."""

    def reload(self) -> Changes: ...
