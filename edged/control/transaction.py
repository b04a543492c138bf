"""Apply a new config to the running models: all of it, or none of it.

1. Diff the models by name. Unchanged models keep their running pipeline object.
2. Prepare (ModelSet.prepare): place the new model set on a copy of the placement, build
   and load the plan and construct the pipeline of every new or changed model, and start
   them. Old versions of changed models keep serving meanwhile, so a model being replaced
   has no gap either.
3. Run the caller's commit step (persisting the config).
4. Commit (ModelSet.commit): one switch of the config, slots and placement in force, then
   drain and close the retired pipelines.

A failure in 2 or 3 aborts the change set (ModelSet.abort closes what was built and
started) and raises ApplyError naming the model and cause; what was in force never changed.
"""

from __future__ import annotations

import logging
from typing import Callable, Collection, Optional

from edged.config.model import Config
from edged.errors import ApplyError, EdgedError
from edged.model_changes import Changes, diff_models
from edged.model_set import ModelSet

__all__ = ["ApplyError", "Changes", "diff_models", "apply_config"]

log = logging.getLogger(__name__)


def apply_config(
    models: ModelSet,
    new: Config,
    rebuild: Collection[str] = (),
    before_switch: Optional[Callable[[Changes], None]] = None,
    source: Optional[str] = None,
    digest: Optional[str] = None,
) -> Changes:
    """``before_switch`` runs once everything is built and started (persisting the config):
    if it raises, the apply fails like a model that did not load. ``source``/``digest``
    record where the new config came from."""
    change = models.prepare(new, rebuild)
    if before_switch is not None:
        try:
            before_switch(change.changes)
        except Exception as exc:
            models.abort(change)
            reason = str(exc) if isinstance(exc, EdgedError) else f"{type(exc).__name__}: {exc}"
            raise ApplyError(reason) from exc
    models.commit(change, source, digest)
    changes = change.changes
    log.info(
        "config version %d in force: added %s, changed %s, removed %s",
        new.version,
        changes.added or "-",
        changes.changed or "-",
        changes.removed or "-",
    )
    return changes
