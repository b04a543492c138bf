"""Immutable snapshots of the running models: what every reader of the running state sees.

The model set (edged/model_set.py) owns the slots, pipelines and placement and builds a
:class:`RunningState` on request. Status lines, systemd's STATUS= and watchdog decisions,
telemetry, ``config/state`` and ``cmd/snapshot`` read these values only, never the owner's
internals, so none of them can change the running models or see one half-switched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from edged.config.model import Config
from edged.fetch.progress import DownloadProgress
from edged.pipeline.stats import STAGES, CumulativeLatency, ModelStats

__all__ = [
    "Counters",
    "ModelState",
    "OutputRates",
    "RunningState",
    "SourceState",
    "counters_of",
    "describe_fallback",
    "latency_summaries",
    "latency_totals",
    "placement_view",
    "source_states",
]

# A fallback reason can carry a compiler's log; the status line keeps its start.
REASON_WIDTH = 100

# differs_from_prediction is per layer, too long to repeat every period; the plan's manifest
# keeps the layer placement it came from.
PLACEMENT_KEYS = ("reason", "note", "not_on", "fell_back_from", "error", "accuracy")


@dataclass(frozen=True)
class Counters:
    """A pipeline's counters at one moment; ``started`` is when counting began (monotonic)."""

    frames_in: int
    frames_out: int
    dropped: Mapping[str, int]
    batches: int
    batch_frames: int
    started: float

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True)
class SourceState:
    """One source of a model at one moment: its state (live, reconnecting, failed, finished,
    stopped), why it is not live, when it retries, and its own frame counters."""

    id: str
    type: str
    state: str
    error: Optional[str] = None  # why it failed, or why it is reconnecting
    retry_in_s: Optional[float] = None  # while reconnecting: seconds to the next attempt
    frames_in: int = 0
    frames_out: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)  # the source's own counters (reconnects...)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True)
class ModelState:
    """One configured model as it stands: served by a pipeline, still planning, or failed."""

    name: str
    config_digest: str  # of the model's config entry: tells a changed model from the same one
    device: str  # cpu | gpu | gpuN | dla0 | dla1: where placement put its (first) engine
    batch: int
    state: str  # created | running | draining | stopped | failed | a plan step (building, ...)
    error: Optional[str] = None
    engines: Tuple[str, ...] = ()  # the device of each engine instance
    counters: Optional[Counters] = None  # None until a pipeline exists
    # Per stage (edged.pipeline.stats.STAGES) over the telemetry window: count, mean, p50,
    # p90, p99, max in ms. Empty when the snapshot was taken without latencies.
    latency_ms: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # Per stage, every latency since the pipeline began in fixed cumulative buckets (the
    # Prometheus histograms); empty when the snapshot was taken without latencies.
    latency_totals: Mapping[str, CumulativeLatency] = field(default_factory=dict)
    source: Optional[Mapping[str, Any]] = None  # the first source's own state and counters, if it keeps any
    sources: Tuple[SourceState, ...] = ()  # every source in force, in config order
    source_finished: bool = False  # the source ended (exhausted, failed or stopped)
    finished: bool = False  # every pipeline thread ended
    last_progress: Optional[float] = None  # monotonic time of the workers' last sign of life
    placement: Optional[Mapping[str, Any]] = None  # why this device: reason, note, not_on, ...
    fallback: Optional[str] = None  # "fell back from dla0: <why>" when it left its device
    restarts: int = 0  # pipelines replaced in-process because a worker was stuck
    sink: Optional[Mapping[str, Any]] = None  # while results cannot be written: error, held_bytes
    last_restart: Optional[str] = None  # why the latest one was

    @property
    def serving(self) -> bool:
        return self.counters is not None and self.state == "running"


@dataclass(frozen=True)
class RunningState:
    """Every configured model at one moment, with the config in force and where it came from."""

    config: Config
    source: str  # "file" or "pushed"
    digest: Optional[str]  # of the push that set the config, for duplicate detection
    taken_at: float  # time.monotonic() when the snapshot was taken
    models: Mapping[str, ModelState]  # in config order
    building: bool = False  # the first plans are still being obtained
    plan_cache_problem: Optional[str] = None  # why plans.cache_dir is not in use, if it is not
    plan_builds: Mapping[str, int] = field(default_factory=dict)  # builds since start: built, failed
    plan_build_seconds: float = 0.0  # the time those builds took
    downloads: Tuple[DownloadProgress, ...] = ()  # model files being fetched by URL now

    @property
    def version(self) -> int:
        return self.config.version


def counters_of(stats: ModelStats) -> Counters:
    raw = stats.counters()
    return Counters(
        raw["frames_in"], raw["frames_out"], raw["dropped"], raw["batches"], raw["batch_frames"], stats.started
    )


def source_states(statuses: Sequence[Mapping[str, Any]], stats: ModelStats) -> Tuple[SourceState, ...]:
    """The per-source values from a pipeline's ``source_status()`` and its counters."""
    per_source = stats.counters()["sources"]
    out: List[SourceState] = []
    for status in statuses:
        counts = per_source.get(status["id"], {})
        out.append(
            SourceState(
                id=status["id"],
                type=status["type"],
                state=status["state"],
                error=status.get("error"),
                retry_in_s=status.get("retry_in_s"),
                frames_in=int(counts.get("frames_in", 0)),
                frames_out=int(counts.get("frames_out", 0)),
                dropped=dict(counts.get("dropped", {})),
                detail=dict(status.get("detail", {})),
            )
        )
    return tuple(out)


def latency_summaries(stats: ModelStats, now: float) -> Dict[str, Dict[str, float]]:
    """Per stage with samples in the window ending at ``now``: count, mean, p50, p90, p99, max."""
    out = {}
    for stage in STAGES:
        hist = stats.latency[stage].snapshot(now)
        if hist.count:
            out[stage] = {k: float(v) for k, v in hist.summary().items() if v is not None}
    return out


def latency_totals(stats: ModelStats) -> Dict[str, CumulativeLatency]:
    """Per stage: a copy of its cumulative counts since the pipeline began."""
    return {stage: stats.latency[stage].totals() for stage in STAGES}


def placement_view(status: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The non-empty placement fields of ``Placer.status()``; None when there are none."""
    view = {key: status[key] for key in PLACEMENT_KEYS if status.get(key)}
    return view or None


def describe_fallback(status: Mapping[str, Any], model_path: str) -> Optional[str]:
    """``fell back from dla0: <why>`` when a model left its placed device at run time, and
    ``int8 refused by the accuracy check on cpu: <why>; serving fp16`` for each plan the
    accuracy gate refused (edged/accuracy/admission.py)."""
    parts = []
    left = status.get("fell_back_from")
    if left is not None:
        why = " ".join(str(status["not_on"].get(left, "")).split())
        if why.startswith(model_path + ": "):
            why = why[len(model_path) + 2 :]  # backend errors lead with the model's path; the name says it
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


class OutputRates:
    """Output frames per second of each model between one reader's successive snapshots.

    ``since_start``: the first reading of a model covers the time since its pipeline began
    counting (status lines); otherwise it is None until a second reading (telemetry).
    A reader keeps its own instance: rates are per reader.
    """

    def __init__(self, since_start: bool = False) -> None:
        self._since_start = since_start
        self._marks: Dict[str, Tuple[float, int, float]] = {}  # name -> (time, frames_out, started)

    def update(self, model: ModelState, now: float) -> Optional[float]:
        counters = model.counters
        if counters is None:
            self._marks.pop(model.name, None)
            return None
        then = self._marks.get(model.name)
        self._marks[model.name] = (now, counters.frames_out, counters.started)
        if then is None or then[2] != counters.started:  # first reading, or a new pipeline
            if not self._since_start:
                return None
            then = (counters.started, 0, counters.started)
        return (counters.frames_out - then[1]) / (now - then[0]) if now > then[0] else 0.0
