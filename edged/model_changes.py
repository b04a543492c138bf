"""Which models a new config adds, changes, removes or keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Dict, List

from edged.config.model import Config

__all__ = ["Changes", "diff_models"]


@dataclass
class Changes:
    added: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    # Changed keys that take effect only at the next start (edged/config/effect.py).
    restart_required: List[str] = field(default_factory=list)
    # Models whose configured plan the accuracy gate refused: what serves instead, and why.
    accuracy: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        doc: Dict[str, Any] = {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
        }
        if self.accuracy:
            doc["accuracy"] = self.accuracy
        return doc


def diff_models(old: Config, new: Config, rebuild: Collection[str] = ()) -> Changes:
    """``rebuild`` names models to rebuild even though their config is unchanged."""
    before = {m.name: m for m in old.models}
    changes = Changes()
    for model in new.models:
        if model.name not in before:
            changes.added.append(model.name)
        elif before[model.name] != model or model.name in rebuild:
            changes.changed.append(model.name)
        else:
            changes.unchanged.append(model.name)
    names = {m.name for m in new.models}
    changes.removed = [name for name in before if name not in names]
    return changes
