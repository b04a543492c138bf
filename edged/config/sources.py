"""Cross-field rules of a model's sources that the JSON Schema cannot state."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

__all__ = ["source_problems"]


def source_problems(models: Sequence[Any]) -> List[str]:
    """A model gives ``source`` or ``sources``, not both, and its source ids are unique."""
    problems = []
    for index, model in enumerate(models):
        if not isinstance(model, dict):
            continue
        if "source" in model and "sources" in model:
            problems.append(f"models[{index}]: give source (one) or sources (a list), not both")
        entries = model.get("sources")
        if not isinstance(entries, list):
            continue
        seen: Dict[str, int] = {}
        for position, entry in enumerate(entries):
            source_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(source_id, str):
                if len(entries) > 1:
                    problems.append(
                        f"models[{index}].sources[{position}].id: required when a model has several sources"
                    )
                continue
            if source_id in seen:
                used = f"is already used by sources[{seen[source_id]}]"
                problems.append(f"models[{index}].sources[{position}].id: {source_id!r} {used}")
            else:
                seen[source_id] = position
    return problems
