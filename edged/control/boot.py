"""How the local config file and the persisted pushed config combine.

The file (``/etc/edged/edged.yaml``) is the base. The last accepted push is stored as a
complete config under ``control.state_dir``. At boot and on reload:

* if the stored push's ``version`` is greater than the file's ``version``, the stored
  config is used, with the local-only keys (device id and groups, mqtt, control, plans)
  always taken from the file;
* otherwise the file is used as it is: raising ``version`` in the file above the last
  pushed version is how a local operator takes precedence over pushes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from edged.config.loader import check_memory, load_config, parse_config
from edged.config.model import Config
from edged.control.settings import LOCAL_ONLY, control_settings
from edged.control.store import ConfigStore
from edged.errors import ConfigError

__all__ = ["Effective", "combine", "load_effective"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Effective:
    config: Config
    source: str  # "file" or "pushed"
    digest: Optional[str] = None


def _overlay_local(document: Dict[str, Any], base: Dict[str, Any]) -> Dict[str, Any]:
    for path in LOCAL_ONLY:
        node: Any = base
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        target = document
        for part in path[:-1]:
            target = target.setdefault(part, {})
        if node is None:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = node
    return document


def combine(base: Config) -> Effective:
    store = ConfigStore(control_settings(base).state_dir)
    record = store.load()
    if record is None or record["version"] <= base.version:
        return Effective(base, "file")
    document = _overlay_local(dict(record["document"]), dict(base.document))
    try:
        config = parse_config(document, str(store.path))
        check_memory(config, str(store.path))
    except ConfigError as exc:
        log.error("%s: ignoring the persisted pushed config: %s", store.path, exc)
        return Effective(base, "file")
    return Effective(config, "pushed", record.get("digest"))


def load_effective(path: Union[str, Path]) -> Effective:
    """The config to run: the file layered with the persisted push. A file whose models
    are predicted to need more memory than the device allows them is refused (ConfigError)."""
    base = load_config(path)
    check_memory(base, str(path))
    return combine(base)
