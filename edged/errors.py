"""One exception root for edged; subclasses say which part failed."""

from __future__ import annotations

__all__ = [
    "EdgedError",
    "ConfigError",
    "BackendUnavailable",
    "BackendError",
    "PlanError",
    "SourceError",
    "PlacementError",
]


class EdgedError(Exception):
    """Root of every error edged raises on purpose."""


class ConfigError(EdgedError):
    """A configuration is invalid; ``problems`` lists each one with its key path."""

    def __init__(self, problems: list[str] | str, source: str = "") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.problems))


class BackendUnavailable(EdgedError):
    """A backend's library is not installed; the message says what to install."""


class BackendError(EdgedError):
    """A backend failed to build, load or run a model."""


class PlanError(EdgedError):
    """A plan could not be built, stored or loaded."""


class SourceError(EdgedError):
    """An input source failed (unreadable folder, stream down, camera gone)."""


class PlacementError(EdgedError):
    """A model could not be analysed or placed (unreadable model, unknown platform)."""
