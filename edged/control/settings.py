"""The ``control`` section of the local config, typed, and the parts of a config that
only the local file may set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Tuple

from edged.config.model import Config

__all__ = ["ControlSettings", "control_settings", "LOCAL_ONLY", "REDACTED", "redact"]

# Key paths a push may not change: identity, broker access, trust anchors, where edged
# writes, the resource limits, the hardware tree it reads, and what it exposes (a metrics
# port, Home Assistant discovery). A push that omits them
# inherits the local values; one that changes them is refused.
LOCAL_ONLY: Tuple[Tuple[str, ...], ...] = (
    ("device", "id"),
    ("device", "groups"),
    ("mqtt",),
    ("control",),
    ("plans",),
    ("limits",),
    ("telemetry", "root"),
    ("metrics",),
    ("home_assistant",),
)

_SECRET_NAMES = ("password", "secret", "token", "psk", "private_key")
REDACTED = "<redacted>"


@dataclass(frozen=True)
class ControlSettings:
    accept_pushes: bool = True
    state_dir: str = "/var/lib/edged"
    model_dirs: Tuple[str, ...] = ()
    data_dirs: Tuple[str, ...] = ()
    public_keys: Tuple[str, ...] = ()
    max_payload_bytes: int = 262144
    devices: Tuple[str, ...] = ("/dev/video*",)
    command_window_s: float = 300.0


def control_settings(config: Config) -> ControlSettings:
    section: Mapping[str, Any] = config.document.get("control") or {}
    defaults = ControlSettings()
    return ControlSettings(
        accept_pushes=bool(section.get("accept_pushes", defaults.accept_pushes)),
        state_dir=str(section.get("state_dir", defaults.state_dir)),
        model_dirs=tuple(section.get("model_dirs", ())),
        data_dirs=tuple(section.get("data_dirs", ())),
        public_keys=tuple(section.get("public_keys", ())),
        max_payload_bytes=int(section.get("max_payload_bytes", defaults.max_payload_bytes)),
        devices=tuple(section.get("devices", defaults.devices)),
        command_window_s=float(section.get("command_window_s", defaults.command_window_s)),
    )


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return any(lowered == name or lowered.endswith("_" + name) for name in _SECRET_NAMES)


def redact(node: Any) -> Any:
    """A copy of a config document with secret values (passwords, tokens) replaced."""
    if isinstance(node, dict):
        return {k: (REDACTED if _is_secret(str(k)) and v is not None else redact(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [redact(v) for v in node]
    return node
