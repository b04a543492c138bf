"""One exception root for edged; subclasses say which part failed."""

from __future__ import annotations

from typing import Optional

__all__ = [
    "EdgedError",
    "ConfigError",
    "BackendUnavailable",
    "BackendError",
    "NetworkBuilderError",
    "PlanError",
    "CudaError",
    "SourceError",
    "PlacementError",
    "ApplyError",
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


class NetworkBuilderError(BackendError):
    """A configured network-builder function could not be loaded or raised while building;
    ``user_traceback`` holds the frames from the user's code, edged's own left out."""

    def __init__(self, message: str, user_traceback: str = "") -> None:
        self.user_traceback = user_traceback
        super().__init__(message)


class PlanError(EdgedError):
    """A plan could not be built, stored or loaded."""


class SourceError(EdgedError):
    """An input source failed (unreadable folder, stream down, camera gone)."""


class CudaError(BackendError):
    """A CUDA runtime call failed; carries CUDA's error name and message."""

    def __init__(self, call: str, code: int, name: str, message: str) -> None:
        self.call = call
        self.code = code
        self.name = name
        super().__init__(f"{call} failed: {name} ({code}): {message}")


class PlacementError(EdgedError):
    """A model could not be analysed or placed (unreadable model, unknown platform)."""


class ApplyError(EdgedError):
    """A new config could not be put in force; the previous one still is."""

    def __init__(self, message: str, model: Optional[str] = None) -> None:
        self.model = model
        super().__init__(message)
