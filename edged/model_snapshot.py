"""A slot of the model set as an immutable ModelState (edged/model_state.py): the reading
side of the model set, kept apart from what changes the running models."""

from __future__ import annotations

import hashlib
from typing import Any, Dict

from edged.config.model import ModelConfig
from edged.errors import PlacementError
from edged.model_loading import resolve_device
from edged.model_slots import ModelSlot
from edged.model_state import (
    ModelState,
    counters_of,
    describe_fallback,
    latency_summaries,
    latency_totals,
    placement_view,
    source_states,
)
from edged.placement.service import Placer

__all__ = ["model_state"]


def model_state(slot: ModelSlot, placer: Placer, now: float, latency: bool) -> ModelState:
    """One slot as an immutable value at ``now``; ``latency``: with the windowed latency
    summaries."""
    name = slot.config.name
    try:
        device = placer.device_for(name)
    except PlacementError:
        device = resolve_device(slot.config)
    status = placer.status(name)
    common: Dict[str, Any] = dict(
        name=name,
        config_digest=_digest(slot.config),
        device=device,
        batch=slot.config.batch,
        state=slot.state,
        error=slot.error,
        restarts=slot.restarts,
        last_restart=slot.last_restart,
        placement=placement_view(status),
        fallback=describe_fallback(status, slot.config.path),
    )
    pipeline = slot.pipeline
    if pipeline is None:
        return ModelState(**common)
    sources = source_states(pipeline.source_status(), pipeline.stats)
    return ModelState(
        **common,
        engines=tuple(pipeline.devices),
        counters=counters_of(pipeline.stats),
        latency_ms=latency_summaries(pipeline.stats, now) if latency else {},
        latency_totals=latency_totals(pipeline.stats) if latency else {},
        source=(sources[0].detail or None) if sources else None,
        sources=sources,
        source_finished=pipeline.source_finished,
        finished=pipeline.finished,
        last_progress=pipeline.last_progress,
        sink=pipeline.sink.trouble(),
    )


def _digest(model: ModelConfig) -> str:
    # ModelConfig is a frozen dataclass of plain values: its repr is a stable description.
    return hashlib.sha256(repr(model).encode()).hexdigest()[:16]
