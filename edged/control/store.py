"""The accepted pushed config, persisted atomically under the state directory.

Written with edged/atomic_file.py: after a power cut the file holds either the old or the
new config, never a mix. Mode 0600: the document may hold broker credentials.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, Optional

from edged.atomic_file import write_atomic

__all__ = ["ConfigStore", "STORE_NAME"]

log = logging.getLogger(__name__)

STORE_NAME = "pushed-config.json"


class ConfigStore:
    def __init__(self, state_dir: str) -> None:
        self.path = Path(state_dir) / STORE_NAME

    def save(self, document: Dict[str, Any], version: int, digest: str) -> None:
        record = {"version": version, "digest": digest, "saved_at": time.time(), "document": document}
        data = json.dumps(record, indent=1, sort_keys=True).encode()
        write_atomic(self.path, data)

    def load(self) -> Optional[Dict[str, Any]]:
        """The persisted record, or None when there is none or it is unreadable (logged:
        the local file then applies on its own)."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("%s: ignoring the persisted pushed config: %s", self.path, exc)
            return None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("document"), dict)
            or not isinstance(record.get("version"), int)
        ):
            log.error("%s: ignoring the persisted pushed config: not a config record", self.path)
            return None
        return record
