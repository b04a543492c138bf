"""The running models: one owner for the slots, their pipelines, placement and plans.

Everything that changes which models run goes through this object: the first start (plans
obtained one model at a time on a background thread), a change set prepared, committed or
aborted (edged/control/transaction.py drives those for pushes and reloads), and the final
drain. Everything that only reads goes through :meth:`ModelSet.snapshot`, an immutable
value (edged/model_state.py).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import tempfile
import threading
import time
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Tuple

from edged.config.model import Config, ModelConfig
from edged.errors import ApplyError, EdgedError, PlacementError, PlanError
from edged.fetch import Fetcher, download_settings
from edged.heap import release_free_heap
from edged.model_changes import Changes, diff_models
from edged.model_loading import load_pipeline, resolve_device
from edged.model_slots import ChangeSet, ModelSlot, drain
from edged.model_snapshot import model_state
from edged.model_state import RunningState
from edged.pipeline.model_pipeline import ModelPipeline, SourceEdit
from edged.placement.service import Placer, local_target
from edged.plans import PlanBuilds, PlanManager, PlanProgress, PlanStore
from edged.platform import Platform
from edged.systemd import log_fields

__all__ = ["ModelSet", "DRAIN_TIMEOUT_S"]

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 4.0
PLAN_CACHE_RETRY_S = 60.0


class ModelSet:
    def __init__(self, config: Config, platform: Platform, source: str = "file", digest: Optional[str] = None) -> None:
        self._config = config
        self._source, self._digest = source, digest
        self._platform = platform
        self._slots: Dict[str, ModelSlot] = {m.name: ModelSlot(m) for m in config.models}
        self._plans: Optional[PlanManager] = None
        self._plan_builds = PlanBuilds()  # outlives a PlanManager replaced by plans()
        # Why plans.cache_dir is not used (None when it is), and when to try it again.
        self.plan_cache_problem: Optional[str] = None
        self._plan_cache_retry = 0.0
        self._builder: Optional[threading.Thread] = None
        self._stop = threading.Event()
        # Which device each model's plan targets (DLA cores, GPUs, CPU); see edged/placement.
        self._placer = Placer(local_target(platform))
        self._placer.plan(config.models)
        # Called with every pipeline this set loads, before it starts (e.g. a results publisher).
        self.pipeline_hooks: List[Callable[[ModelPipeline], None]] = []
        # Model files named by URL: fetched (or found and verified) before a model loads.
        self.fetcher = Fetcher()

    # -- what is in force ------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    @property
    def slots(self) -> Mapping[str, ModelSlot]:
        """The slots in force (replaced as a whole by a commit; read, never modify)."""
        return self._slots

    @property
    def placer(self) -> Placer:
        return self._placer

    @property
    def platform(self) -> Platform:
        return self._platform

    @property
    def source(self) -> str:
        """Where the config in force came from: "file" or "pushed"."""
        return self._source

    @property
    def digest(self) -> Optional[str]:
        """The digest of the push that set the config in force (None for a file)."""
        return self._digest

    def device_of(self, name: str) -> str:
        """The device a configured model's plan targets: placement's, else the config's."""
        try:
            return self._placer.device_for(name)
        except PlacementError:
            return resolve_device(self._slots[name].config)

    def plans(self) -> PlanManager:
        """The plan cache. When ``plans.cache_dir`` is unusable (read-only, full, not
        creatable) plans go to a temporary directory for this run, loudly, and the
        configured one is tried again before later loads."""
        if self._plans is None or (self.plan_cache_problem and time.monotonic() >= self._plan_cache_retry):
            plans = self._config.plans
            try:
                store = PlanStore(plans.cache_dir, plans.max_size_mb << 20, plans.max_plans)
            except PlanError as exc:
                self._plan_cache_retry = time.monotonic() + PLAN_CACHE_RETRY_S
                if self._plans is None:
                    store = PlanStore(_scratch_plan_dir(), plans.max_size_mb << 20, plans.max_plans)
                    self.plan_cache_problem = f"{exc}; plans go to {store.root} for this run"
                    log.error("plan cache unusable: %s", self.plan_cache_problem)
                    self._plans = PlanManager(store, self._platform, self._plan_builds)
                return self._plans
            if self.plan_cache_problem:
                log.warning("plan cache %s usable again", plans.cache_dir)
                self.plan_cache_problem = None
            self._plans = PlanManager(store, self._platform, self._plan_builds)
        return self._plans

    # -- loading and the first start -------------------------------------------------------

    def load_model(
        self,
        model: ModelConfig,
        progress: Optional[PlanProgress] = None,
        placer: Optional[Placer] = None,
        rebuild: bool = False,
    ) -> ModelPipeline:
        """Plan (cached or built; ``rebuild``: built anew), runner and pipeline for one model
        (not started). ``placer``: the placement of a config being prepared (default: the one
        in force)."""
        if model.remote_files:
            # Already in the store when a push fetched them before its turn; at the first
            # start, a reload or a restart this may download (docs/downloads.md).
            if progress is not None:
                progress.state = "fetching files"
            self.fetcher.ensure(model.name, model.remote_files, download_settings(self._config.document))
        pipeline = load_pipeline(self.plans(), model, placer or self._placer, self._config, progress, rebuild)
        # Parsing, optimising or building left the heap full of freed pages (edged/heap.py).
        release_free_heap()
        for hook in self.pipeline_hooks:
            hook(pipeline)
        return pipeline

    def start(self) -> None:
        """Plans are obtained one model at a time on a background thread (builds are CPU and
        memory heavy on a Jetson); each model serves as soon as its own plan is ready."""
        builder = threading.Thread(target=self._build_and_start, name="edged-plans", daemon=True)
        builder.start()
        self._builder = builder

    def _build_and_start(self) -> None:
        # Models whose files must still be downloaded go last, so a slow download delays
        # no model that has its files already.
        slots = sorted(
            self._slots.values(), key=lambda s: not all(os.path.exists(r.file) for r in s.config.remote_files)
        )
        for slot in slots:
            if self._stop.is_set():
                return
            try:
                pipeline = self.load_model(slot.config, slot.plan)
                if self._stop.is_set():
                    pipeline.close_runners()
                    return
                slot.pipeline = pipeline
                pipeline.start()
                device = self._placer.device_for(slot.config.name)
                log.info(
                    "model %s: serving (%s, %s, plan from %s)",
                    slot.config.name,
                    slot.config.backend,
                    device,
                    slot.plan.source,
                    extra=log_fields(slot.config.name, device, _key_text(pipeline.plan_key)),
                )
            except EdgedError as exc:
                slot.error = str(exc)
                slot.plan.state = "failed"
                slot.plan.error = str(exc)
                log.error("model %s: not serving: %s", slot.config.name, exc, extra=log_fields(slot.config.name))

    @property
    def building(self) -> bool:
        """The first plans are still being obtained."""
        return self._builder is not None and self._builder.is_alive()

    def wait_started(self, timeout: Optional[float] = None) -> bool:
        """Wait until every model is serving or has failed; True when that happened in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._builder is None:  # start() has not been called yet
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        self._builder.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self._builder.is_alive()

    def all_finished(self) -> bool:
        """Every model's (finite) source has been fully processed."""
        if self.building:
            return False
        pipelines = [s.pipeline for s in self._slots.values() if s.pipeline]
        return bool(pipelines) and all(p.finished for p in pipelines)

    def stop(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """Drain every pipeline; True when all drained in time."""
        self._stop.set()
        self.fetcher.stop.set()
        if self._builder is not None:
            # A build in progress cannot be interrupted; no model starts after the stop.
            self._builder.join(0.5)
        return drain([s.pipeline for s in self._slots.values() if s.pipeline], timeout)

    # -- changing the set ------------------------------------------------------------------

    def prepare(self, new: Config, rebuild: Collection[str] = ()) -> ChangeSet:
        """Build and start the pipelines of every new or changed model of ``new`` beside the
        running ones (which keep serving), on a copy of the placement. Raises ApplyError
        naming the model and cause; then nothing was left running or held."""
        if self._builder is not None:
            # The first plans are still being built: prepare on top of them, not beside them.
            self._builder.join()
        changes = diff_models(self._config, new, rebuild)
        built: List[ModelPipeline] = []
        started: List[ModelPipeline] = []
        edits: List[Tuple[ModelPipeline, SourceEdit]] = []
        failing: Optional[str] = None
        # Models whose placement still works keep their devices (placement/solver.py).
        placer = copy.deepcopy(self._placer)
        try:
            placer.plan(new.models)
            self._keep_engines(changes, placer)
            fresh = set(changes.added + changes.changed)
            for name, sources in changes.sources.items():
                failing = name
                pipeline = self._slots[name].pipeline
                assert pipeline is not None  # _keep_engines rebuilds a model without one
                edit = pipeline.prepare_sources(new.model(name), sources.added, sources.changed, sources.removed)
                edits.append((pipeline, edit))
            for model in new.models:
                if model.name in fresh:
                    failing = model.name
                    built.append(self.load_model(model, placer=placer, rebuild=model.name in rebuild))
            for pipeline in built:
                failing = pipeline.model.name
                pipeline.start()
                started.append(pipeline)
                if pipeline.state == "failed":
                    raise ApplyError(pipeline.error or "failed on start")
            for pipeline in built:
                outcome = placer.status(pipeline.model.name).get("accuracy") or {}
                if outcome.get("refused"):
                    changes.accuracy[pipeline.model.name] = outcome
        except Exception as exc:
            self._discard(built, started)
            for pipeline, edit in edits:
                pipeline.discard_sources(edit)
            reason = str(exc) if isinstance(exc, EdgedError) else f"{type(exc).__name__}: {exc}"
            raise ApplyError(f"models.{failing}: {reason}" if failing else reason, failing) from exc
        by_name = {p.model.name: p for p in built}
        slots = {}
        for m in new.models:
            if m.name in by_name:
                slots[m.name] = ModelSlot(m, by_name[m.name])
            elif m.name in changes.sources:
                slots[m.name] = dataclasses.replace(self._slots[m.name], config=m)
            else:
                slots[m.name] = self._slots[m.name]
        retired = [p for p in (self._slots[n].pipeline for n in changes.changed + changes.removed) if p is not None]
        return ChangeSet(new, changes, slots, placer, built, retired, edits)

    def _keep_engines(self, changes: Changes, placer: Placer) -> None:
        """Models whose sources alone changed keep their pipeline and engines, unless the
        pipeline has ended (or was never built) or the new placement moves the model."""
        for name in list(changes.sources):
            pipeline = self._slots[name].pipeline
            try:
                moved = placer.devices_for(name) != self._placer.devices_for(name)
            except PlacementError:
                moved = False  # placement has no say (a config-fixed device): nothing moves
            if pipeline is None or not pipeline.accepts_source_changes or moved:
                changes.rebuild_instead(name)

    def commit(self, change: ChangeSet, source: Optional[str] = None, digest: Optional[str] = None) -> None:
        """Put a prepared change set in force, then drain what it retired. ``source`` and
        ``digest`` say where the new config came from (kept when None)."""
        # Readers pick up either the old or the new set: the slots go first, they are what
        # the snapshot iterates.
        self._slots = change.slots
        self._placer = change.placer
        self._config = change.config
        if source is not None:
            self._source, self._digest = source, digest
        for pipeline, edit in change.source_edits:
            pipeline.apply_sources(edit)
        drain(change.retired, DRAIN_TIMEOUT_S)
        for pipeline in change.retired:
            self.release_plans(pipeline)

    def abort(self, change: ChangeSet) -> None:
        """Stop and close everything a prepared change set built; what is in force stays."""
        self._discard(change.started, change.started)
        for pipeline, edit in change.source_edits:
            pipeline.discard_sources(edit)

    def _discard(self, pipelines: List[ModelPipeline], started: List[ModelPipeline]) -> None:
        for pipeline in pipelines:
            try:
                if pipeline in started:
                    pipeline.stop(1.0)
                else:
                    pipeline.sink.close()
                    pipeline.close_runners()
                self.release_plans(pipeline)
            except Exception:  # already failing; the first cause is the one reported
                log.exception("model %s: cleanup after a failed apply", pipeline.model.name)

    def release_plans(self, pipeline: ModelPipeline) -> None:
        """A retired pipeline's plans may be evicted again (the store holds plans in use)."""
        if self._plans is None:
            return
        for key in [pipeline.plan_key, *pipeline.extra_plan_keys]:
            if key is not None:
                self._plans.release(key)

    # -- recovering a stuck model -----------------------------------------------------------

    def stuck(self, now: Optional[float] = None) -> Dict[str, str]:
        """Running models whose infer or output worker showed no life for longer than the
        model's ``stall_timeout_s``, with the reason. A quiet source is never stuck."""
        now = time.monotonic() if now is None else now
        found = {}
        for name, slot in list(self._slots.items()):
            pipeline = slot.pipeline
            if pipeline is None or pipeline.state != "running" or pipeline.finished:
                continue
            silent = now - pipeline.last_progress
            if silent > slot.config.stall_timeout_s:
                found[name] = f"no progress from its inference workers for {silent:.0f} s"
        return found

    def restart(self, name: str, reason: str) -> bool:
        """Replace a stuck model's pipeline by a fresh one (plan from the cache) and abandon
        the old one; the other models are untouched. Call it from the change queue, in turn
        with config changes. False when the model is gone or was already replaced, or its
        new pipeline could not be started (then the model shows as failed with the cause)."""
        slot = self._slots.get(name)
        old = slot.pipeline if slot is not None else None
        if slot is None or old is None or old.state != "running":
            return False
        log.error("model %s: restarting its pipeline: %s", name, reason, extra=log_fields(name))
        old.abandon(f"stuck: {reason}")
        fresh = ModelSlot(slot.config, restarts=slot.restarts + 1, last_restart=reason)
        try:
            pipeline = self.load_model(slot.config, fresh.plan)
            pipeline.start()
        except EdgedError as exc:
            fresh.error = f"restart after a stall failed: {exc}"
            log.error("model %s: %s", name, fresh.error, extra=log_fields(name))
            pipeline = None
        fresh.pipeline = pipeline
        self._slots = {n: fresh if n == name else s for n, s in self._slots.items()}
        return pipeline is not None

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self, latency: bool = True) -> RunningState:
        """The running state as one immutable value. ``latency``: include the windowed
        latency summaries (a pass over each histogram; telemetry and status lines want them,
        the watchdog does not)."""
        slots, placer, config = self._slots, self._placer, self._config
        now = time.monotonic()
        models = {name: model_state(slot, placer, now, latency) for name, slot in list(slots.items())}
        builds, build_seconds = self._plan_builds.counts()
        return RunningState(
            config,
            self._source,
            self._digest,
            now,
            models,
            self.building,
            plan_cache_problem=self.plan_cache_problem,
            plan_builds=builds,
            plan_build_seconds=build_seconds,
            downloads=self.fetcher.board.snapshot(),
        )


def _scratch_plan_dir() -> str:
    # systemd's RuntimeDirectory= (a tmpfs: plans held in memory) when there is one.
    return tempfile.mkdtemp(prefix="edged-plans-", dir=os.environ.get("RUNTIME_DIRECTORY") or None)


def _key_text(key: Any) -> Optional[str]:
    if key is None:
        return None
    return str(getattr(key, "name", None) or key)
