"""When a changed config key takes effect: on apply, or only at the daemon's next start.

Models, model defaults, ``telemetry.period_s``/``expiry_s`` and the whole ``control``
section (read afresh for every message) take effect when a config is applied. The keys
below are read once when the daemon starts: the MQTT connection and its subscriptions,
the plan cache, the power/health readers and statistics windows, the metrics endpoint and
Home Assistant discovery. An applied config that changes one of them says so
(``restart_required`` in the push result and a warning in the log) instead of claiming an
effect it does not have.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Tuple

from edged.config.model import Config

__all__ = ["AT_NEXT_START", "restart_required"]

AT_NEXT_START: Tuple[Tuple[str, ...], ...] = (
    ("device", "id"),
    ("device", "groups"),
    ("mqtt",),
    ("plans",),
    ("telemetry", "root"),
    ("telemetry", "window_s"),
    ("metrics",),
    ("home_assistant",),
)


def _at(document: Mapping[str, Any], path: Tuple[str, ...]) -> Any:
    node: Any = document
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def restart_required(old: Config, new: Config) -> List[str]:
    """The key paths of ``AT_NEXT_START`` whose value differs between the two configs."""
    return [".".join(path) for path in AT_NEXT_START if _at(old.document, path) != _at(new.document, path)]
