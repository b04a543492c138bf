"""Which models a new config adds, changes, removes or keeps, and which running models only
gain, lose or change sources (those keep their engine: edged/pipeline/source_set.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Collection, Dict, List, Optional

from edged.config.model import Config, ModelConfig

__all__ = ["Changes", "SourceChanges", "diff_models", "diff_sources"]


@dataclass
class SourceChanges:
    """Source ids a model's new config adds, changes or removes; the rest of it is the same."""

    added: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, List[str]]:
        return {"added": self.added, "changed": self.changed, "removed": self.removed}


@dataclass
class Changes:
    added: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    # Models whose sources alone changed: edited in place, their engines kept.
    sources: Dict[str, SourceChanges] = field(default_factory=dict)
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
        if self.sources:
            doc["sources"] = {name: change.as_dict() for name, change in self.sources.items()}
        if self.accuracy:
            doc["accuracy"] = self.accuracy
        return doc

    def rebuild_instead(self, name: str) -> None:
        """A model whose sources could not be edited in place (its pipeline has ended)
        is rebuilt like any changed model."""
        del self.sources[name]
        self.changed.append(name)


def diff_sources(old: ModelConfig, new: ModelConfig) -> Optional[SourceChanges]:
    """What changed in the sources when nothing else of the model did; None otherwise."""
    if dataclasses.replace(old, source=new.source, sources=new.sources) != new:
        return None
    before = {s.id: s for s in old.sources}
    after = {s.id: s for s in new.sources}
    return SourceChanges(
        added=[i for i in after if i not in before],
        changed=[i for i in after if i in before and before[i] != after[i]],
        removed=[i for i in before if i not in after],
    )


def diff_models(old: Config, new: Config, rebuild: Collection[str] = ()) -> Changes:
    """``rebuild`` names models to rebuild even though their config is unchanged."""
    before = {m.name: m for m in old.models}
    changes = Changes()
    for model in new.models:
        if model.name not in before:
            changes.added.append(model.name)
        elif model.name in rebuild:
            changes.changed.append(model.name)
        elif before[model.name] != model:
            sources = diff_sources(before[model.name], model)
            if sources is None:
                changes.changed.append(model.name)
            else:
                changes.sources[model.name] = sources
        else:
            changes.unchanged.append(model.name)
    names = {m.name for m in new.models}
    changes.removed = [name for name in before if name not in names]
    return changes
