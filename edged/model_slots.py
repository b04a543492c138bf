"""What the model set holds: a slot per configured model, a change set prepared beside
the running models, and the parallel drain of pipelines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from edged.config.model import Config, ModelConfig
from edged.model_changes import Changes
from edged.pipeline.model_pipeline import ModelPipeline, SourceEdit
from edged.placement.service import Placer
from edged.plans import PlanProgress

__all__ = ["ChangeSet", "ModelSlot", "drain"]


@dataclass
class ModelSlot:
    """A configured model and what became of it."""

    config: ModelConfig
    pipeline: Optional[ModelPipeline] = None
    error: Optional[str] = None
    plan: PlanProgress = field(default_factory=PlanProgress)
    restarts: int = 0  # pipelines replaced because a worker was stuck
    last_restart: Optional[str] = None  # why the latest one was

    @property
    def state(self) -> str:
        if self.error:
            return "failed"
        return self.pipeline.state if self.pipeline else self.plan.describe()


@dataclass
class ChangeSet:
    """A new config prepared beside the running one: its new pipelines built and started,
    the new sources of running models opened, placed on a copy of the placement. Nothing in
    force has changed yet."""

    config: Config
    changes: Changes
    slots: Dict[str, ModelSlot]
    placer: Placer
    started: List[ModelPipeline]
    retired: List[ModelPipeline]
    source_edits: List[Tuple[ModelPipeline, SourceEdit]] = field(default_factory=list)


def drain(pipelines: Sequence[ModelPipeline], timeout: float) -> bool:
    """Stop every source first so the pipelines drain in parallel within one timeout."""
    for pipeline in pipelines:
        pipeline.stop_source()
    deadline = time.monotonic() + timeout
    drained = True
    for pipeline in pipelines:
        drained = pipeline.stop(max(0.1, deadline - time.monotonic())) and drained
    return drained
