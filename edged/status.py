"""What the daemon prints and tells systemd about its models, from a running-state snapshot."""

from __future__ import annotations

from typing import List, Optional

from edged.model_state import OutputRates, RunningState

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
    return lines


def status_summary(state: RunningState) -> str:
    """One line for systemd's STATUS=: models serving, and each plan still in progress."""
    serving = [m for m in state.models.values() if m.serving]
    parts = [f"{len(serving)}/{len(state.models)} models serving"]
    for name, model in state.models.items():
        if model.counters is None:
            parts.append(f"{name}: {model.state}")
    return "; ".join(parts)


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}ms"
