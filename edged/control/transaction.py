"""Apply a new config to a running daemon: all of it, or none of it.

1. Diff the models by name. Unchanged models keep their running pipeline object.
2. Place the new model set (on a copy of the placement), build and load the plan and
   construct the pipeline for every new or changed model.
3. Start them. Old versions of changed models keep serving meanwhile, so a model being
   replaced has no gap either.
4. Run the caller's commit step (persisting the config), then switch: one assignment of the daemon's config and slots.
5. Drain and close the retired pipelines.

A failure in 2, 3 or the commit step closes what was built and started, and raises ApplyError naming the
model and cause; the daemon's config, slots and pipelines were never touched.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Dict, List, Optional

from edged.config.model import Config
from edged.daemon import DRAIN_TIMEOUT_S, Daemon, ModelSlot
from edged.errors import EdgedError
from edged.pipeline.model_pipeline import ModelPipeline

__all__ = ["ApplyError", "Changes", "diff_models", "apply_config"]

log = logging.getLogger(__name__)


class ApplyError(EdgedError):
    """A new config could not be put in force; the previous one still is."""

    def __init__(self, message: str, model: Optional[str] = None) -> None:
        self.model = model
        super().__init__(message)


@dataclass
class Changes:
    added: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
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


def _discard(daemon: Daemon, pipelines: List[ModelPipeline], started: List[ModelPipeline]) -> None:
    for pipeline in pipelines:
        try:
            if pipeline in started:
                pipeline.stop(1.0)
            else:
                pipeline.sink.close()
                pipeline.close_runners()
            daemon.release_plan(pipeline)
        except Exception:  # already failing; the first cause is the one reported
            log.exception("model %s: cleanup after a failed apply", pipeline.model.name)


def apply_config(
    daemon: Daemon,
    new: Config,
    rebuild: Collection[str] = (),
    before_switch: Optional[Callable[[Changes], None]] = None,
) -> Changes:
    """``before_switch`` runs once everything is built and started (persisting the config):
    if it raises, the apply fails like a model that did not load."""
    old = daemon.config
    old_slots: Dict[str, ModelSlot] = daemon.slots
    changes = diff_models(old, new, rebuild)
    fresh = set(changes.added + changes.changed)
    built: List[ModelPipeline] = []
    started: List[ModelPipeline] = []
    failing: Optional[str] = None
    # Placement of the new model set on a copy: the one in force stays untouched until the
    # switch, and models whose placement still works keep their devices (solver.py).
    placer = copy.deepcopy(daemon.placer)
    try:
        placer.plan(new.models)
        for model in new.models:
            if model.name in fresh:
                failing = model.name
                built.append(daemon.load_model(model, placer=placer, rebuild=model.name in rebuild))
        for pipeline in built:
            failing = pipeline.model.name
            pipeline.start()
            started.append(pipeline)
            if pipeline.state == "failed":
                raise ApplyError(pipeline.error or "failed on start")
        failing = None
        for pipeline in built:
            outcome = placer.status(pipeline.model.name).get("accuracy") or {}
            if outcome.get("refused"):
                changes.accuracy[pipeline.model.name] = outcome
        if before_switch is not None:
            before_switch(changes)
    except Exception as exc:
        _discard(daemon, built, started)
        reason = str(exc) if isinstance(exc, EdgedError) else f"{type(exc).__name__}: {exc}"
        raise ApplyError(f"models.{failing}: {reason}" if failing else reason, failing) from exc
    by_name = {p.model.name: p for p in built}
    slots: Dict[str, ModelSlot] = {}
    for model in new.models:
        if model.name in by_name:
            slots[model.name] = ModelSlot(model, by_name[model.name])
        else:
            slots[model.name] = old_slots[model.name]
    retired = [p for p in (old_slots[n].pipeline for n in changes.changed + changes.removed) if p is not None]
    daemon._switch(new, slots, placer)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    for pipeline in retired:
        pipeline._stop_source.set()
    for pipeline in retired:
        pipeline.stop(max(0.1, deadline - time.monotonic()))
        daemon.release_plan(pipeline)
    log.info(
        "config version %d in force: added %s, changed %s, removed %s",
        new.version,
        changes.added or "-",
        changes.changed or "-",
        changes.removed or "-",
    )
    return changes
