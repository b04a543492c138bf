"""What the daemon prints and tells systemd about its models, from a running-state snapshot."""

from __future__ import annotations

from typing import List, Optional

from edged.model_state import ModelState, OutputRates, RunningState, SourceState

__all__ = ["status_lines", "status_summary"]


def status_lines(state: RunningState, rates: Optional[OutputRates] = None) -> List[str]:
    """One line per model (state, device, fps, latency, counters), plus one per fallback.
    ``rates``: the printer's own rate meter (fps since its previous call); without one, fps
    covers the time since each pipeline started."""
    rates = rates or OutputRates(since_start=True)
    lines = []
    for name, model in state.models.items():
        counters = model.counters
        if counters is None:
            lines.append(f"{name}: {model.state} on {model.device}{': ' + model.error if model.error else ''}")
        else:
            e2e = model.latency_ms.get("e2e", {})
            fps = rates.update(model, state.taken_at) or 0.0
            lines.append(
                f"{name}: {model.state} on {model.device} fps {fps:.1f} "
                f"p50 {_ms(e2e.get('p50'))} p99 {_ms(e2e.get('p99'))} in {counters.frames_in} "
                f"out {counters.frames_out} dropped {counters.dropped_total}"
            )
        if model.fallback:
            lines.append(f"  {name}: {model.fallback}")
        if model.sink is not None:
            lines.append(f"  {name}: sink: {model.sink['error']}; {model.sink['held_bytes']} bytes of results held")
        lines += [f"  {name}/{source.id}: {_source_text(source)}" for source in _sources_to_show(model)]
    if state.plan_cache_problem:
        lines.append(f"plan cache: {state.plan_cache_problem}")
    lines += [progress.line() for progress in state.downloads]
    return lines


def status_summary(state: RunningState) -> str:
    """One line for systemd's STATUS=: models serving, each plan still in progress, each
    source not delivering (reconnecting, down) and each model restarted after a stall."""
    serving = [m for m in state.models.values() if m.serving]
    parts = [f"{len(serving)}/{len(state.models)} models serving"]
    for name, model in state.models.items():
        if model.counters is None:
            parts.append(f"{name}: {model.state}")
        for source in model.sources if model.serving else ():
            if source.state not in _QUIET_STATES:
                which = f"source {source.id}" if len(model.sources) > 1 else "source"
                parts.append(f"{name}: {which} {source.state}")
        if model.restarts:
            parts.append(f"{name}: restarted {model.restarts}x after a stall")
        if model.sink is not None:
            parts.append(f"{name}: results not written")
    if state.plan_cache_problem:
        parts.append("plan cache unusable, plans not kept")
    for progress in state.downloads:
        share = f" {100 * progress.bytes_done / progress.total_bytes:.0f}%" if progress.total_bytes else ""
        parts.append(f"{progress.model}: {progress.state} {progress.field}{share}")
    return "; ".join(parts)


# Source states that need no mention in systemd's one-line status.
_QUIET_STATES = ("live", "finished", "stopped")


def _sources_to_show(model: ModelState) -> List[SourceState]:
    """Every source of a model with several; the only one when it is not live."""
    if len(model.sources) > 1:
        return list(model.sources)
    return [s for s in model.sources if s.state not in _QUIET_STATES]


def _source_text(source: SourceState) -> str:
    text = source.state
    if source.retry_in_s is not None:
        text += f" (retry in {source.retry_in_s:g} s)"
    if source.error:
        text += f": {source.error}"
    return f"{text} in {source.frames_in} out {source.frames_out} dropped {source.dropped_total}"


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}ms"
