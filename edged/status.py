"""What the daemon prints and tells systemd about its models."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:
    from edged.daemon import Daemon

__all__ = ["status_lines", "fallback_text", "status_summary"]

# A fallback reason can carry a compiler's log; the status line keeps its start.
REASON_WIDTH = 100


def status_lines(daemon: Daemon) -> List[str]:
    """One line per model (state, device, fps, latency, counters), plus one per fallback."""
    lines = []
    for name, slot in daemon.slots.items():
        device = daemon.device_of(name)
        if slot.pipeline is None:
            lines.append(f"{name}: {slot.state} on {device}{': ' + slot.error if slot.error else ''}")
        else:
            stats = slot.pipeline.stats
            e2e = stats.latency["e2e"].snapshot()
            counters = stats.counters()
            dropped = sum(counters["dropped"].values())
            p50, p99 = e2e.percentile(50), e2e.percentile(99)
            lines.append(
                f"{name}: {slot.state} on {device} fps {stats.fps_since_last():.1f} "
                f"p50 {_ms(p50)} p99 {_ms(p99)} in {counters['frames_in']} "
                f"out {counters['frames_out']} dropped {dropped}"
            )
        fallback = fallback_text(daemon, name)
        if fallback:
            lines.append(f"  {name}: {fallback}")
    return lines


def fallback_text(daemon: Daemon, name: str) -> Optional[str]:
    """``fell back from dla0: <why>`` when a model left its placed device at run time, and
    ``int8 refused by the accuracy check on cpu: <why>; serving fp16`` when the accuracy
    gate refused a plan."""
    status = daemon.placer.status(name)
    parts = []
    left = status.get("fell_back_from")
    if left is not None:
        why = " ".join(str(status["not_on"].get(left, "")).split())
        path = daemon.slots[name].config.path
        if why.startswith(path + ": "):
            why = why[len(path) + 2 :]  # backend errors lead with the model's path; the name says it
        parts.append(f"fell back from {left}: {_clip(why)}")
    accuracy = status.get("accuracy") or {}
    for step in accuracy.get("refused", ()):
        why = str(step["why"]).replace("accuracy check failed: ", "", 1)
        parts.append(f"{step['precision']} refused by the accuracy check on {step['device']}: {_clip(why)}")
    if accuracy.get("refused"):
        parts[-1] += f"; serving {accuracy['precision']}"
    return "; ".join(parts) or None


def _clip(why: str) -> str:
    return why[: REASON_WIDTH - 3] + "..." if len(why) > REASON_WIDTH else why


def status_summary(daemon: Daemon) -> str:
    """One line for systemd's STATUS=: models serving, and each plan still in progress."""
    serving = [n for n, s in daemon.slots.items() if s.pipeline is not None and s.pipeline.state == "running"]
    parts = [f"{len(serving)}/{len(daemon.slots)} models serving"]
    for name, slot in daemon.slots.items():
        if slot.pipeline is None:
            parts.append(f"{name}: {slot.state}")
    return "; ".join(parts)


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}ms"
