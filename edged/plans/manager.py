"""Plans on demand: cached when valid, rebuilt when missing, corrupt or refused."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from edged import __version__
from edged.backends.base import Backend, BuildOptions, Runner
from edged.config.model import ModelConfig
from edged.errors import BackendError, PlanError
from edged.formats.hashing import format_input_hashes
from edged.plans.build_process import build_plan
from edged.plans.key import PlanKey, plan_key
from edged.plans.store import PlanStore
from edged.platform.model import Platform

__all__ = ["PlanBuilds", "PlanManager", "PlanProgress", "plan_identity"]

log = logging.getLogger(__name__)

_LOG_TAIL = 40


def plan_identity(platform: Platform, device: str) -> Dict[str, Any]:
    """The platform identity a plan for ``device`` is keyed by. A plan for gpuN on a host
    with several GPUs is keyed by that GPU's model alone (name, compute capability, SMs):
    TensorRT engines are specific to the GPU model, so an Ampere and a Turing card never
    share a plan, and two identical cards do."""
    identity = platform.identity()
    if device.startswith("gpu") and device[3:].isdigit():
        index = int(device[3:])
        if index >= len(platform.gpus):
            raise PlanError(f"device {device}: this host has {len(platform.gpus)} GPU(s)")
        gpu = platform.gpus[index]
        identity["gpus"] = [[gpu.name, gpu.compute_capability, gpu.sm_count]]
        identity["device"] = "gpu"
    return identity


@dataclass
class PlanProgress:
    """Build state of one model's plan, for status lines and telemetry."""

    state: str = "pending"  # pending | checking | building | ready | failed
    fraction: Optional[float] = None
    phase: str = ""
    started: float = field(default_factory=time.monotonic)
    key: Optional[str] = None
    source: str = ""  # "cache" | "built" | "rebuilt: <why>"
    error: Optional[str] = None

    def update(self, fraction: Optional[float], phase: str) -> None:
        self.fraction, self.phase = fraction, phase

    def describe(self) -> str:
        if self.state == "building":
            done = f"{self.fraction * 100:.0f}%" if self.fraction is not None else "…"
            return f"building plan {done} {time.monotonic() - self.started:.0f}s"
        return self.state


class PlanBuilds:
    """Plan builds since the daemon started, by outcome ("built" or "failed"), and the
    seconds they took; survives a PlanManager replaced when the cache directory recovers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Dict[str, int] = {"built": 0, "failed": 0}
        self._seconds = 0.0

    def add(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self._counts[outcome] = self._counts.get(outcome, 0) + 1
            self._seconds += seconds

    def counts(self) -> Tuple[Dict[str, int], float]:
        with self._lock:
            return dict(self._counts), self._seconds


class PlanManager:
    def __init__(self, store: PlanStore, platform: Platform, builds: Optional[PlanBuilds] = None) -> None:
        self.store = store
        self.platform = platform
        self.builds = builds if builds is not None else PlanBuilds()

    def key(self, model: ModelConfig, backend: Backend, options: BuildOptions) -> PlanKey:
        identity = plan_identity(self.platform, options.device)
        if identity.get("device") == "gpu":
            options = dataclasses.replace(options, device="gpu")  # the GPU's model is in the identity
        return plan_key(
            model.name,
            model.path,
            backend.name,
            backend.version(),
            identity,
            options,
            format_hashes=format_input_hashes(model.format),
        )

    def obtain(
        self,
        model: ModelConfig,
        backend: Backend,
        options: BuildOptions,
        progress: Optional[PlanProgress] = None,
        rebuild: bool = False,
    ) -> Tuple[Runner, PlanKey]:
        """A loaded runner for ``model``: from the cache when valid, else built and stored.
        ``rebuild``: build anew even when a valid plan is cached (an operator's request)."""
        progress = progress or PlanProgress()
        progress.state = "checking"
        key = self.key(model, backend, options)
        progress.key = key.name
        plan = None if rebuild else self.store.get(key)
        rebuilt_because = "requested" if rebuild else ""
        if plan is not None:
            try:
                runner = backend.load_plan(plan, options)
                self.store.hold(key)
                progress.state, progress.source = "ready", "cache"
                return runner, key
            except PlanError as exc:
                rebuilt_because = f"the backend refused the cached plan: {exc}"
                self.store.quarantine(key.name, rebuilt_because)
        failed = None if rebuild else self.store.failure(key)
        if failed is not None:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(failed.get("failed_at", 0))))
            raise BackendError(
                f"{failed.get('reason')} (build failed at {when}; not retried until `edged plan prune` or a rebuild)"
            )
        with self.store.build_lock(key):
            # Another process may have built it while we waited.
            plan = None if rebuild else self.store.get(key)
            if plan is None:
                progress.state = "building"
                progress.started = time.monotonic()
                try:
                    plan, not_cached = self._build(model, backend, options, key, progress.update)
                except BackendError as exc:
                    self.builds.add("failed", time.monotonic() - progress.started)
                    if options.device.startswith("dla"):
                        # A DLA build that failed will fail again (same compiler, model and options)
                        # and costs minutes on a Jetson; the model serves from the GPU meanwhile.
                        try:
                            self.store.record_failure(key, str(exc))
                        except PlanError as unrecorded:
                            log.warning("model %s: build failure not recorded: %s", model.name, unrecorded)
                    raise
                self.builds.add("built", time.monotonic() - progress.started)
                self.store.forget_failure(key)
                progress.source = f"rebuilt: {rebuilt_because}" if rebuilt_because else "built"
                if not_cached:
                    progress.source += f" ({not_cached})"
            else:
                progress.source = "cache"
        runner = backend.load_plan(plan, options)
        self.store.hold(key)
        progress.state = "ready"
        return runner, key

    def _build(
        self,
        model: ModelConfig,
        backend: Backend,
        options: BuildOptions,
        key: PlanKey,
        progress: Callable[[Optional[float], str], None],
    ) -> Tuple[bytes, Optional[str]]:
        """The built plan, and why it is not in the cache (None when it is)."""
        started = time.time()
        log.info("model %s: building plan %s", model.name, key.name)
        built = build_plan(backend, model.path, options, progress)
        facts = {
            "model": model.name,
            "model_path": model.path,
            "built_at": started,
            "build_seconds": round(time.time() - started, 3),
            "edged_version": __version__,
            "build_log_tail": list(built.build_log[-_LOG_TAIL:]),
        }
        if built.layer_placement is not None:
            facts["layer_placement"] = built.layer_placement
        if built.dla_capability is not None:
            facts["dla_capability"] = built.dla_capability
        try:
            path = self.store.put(key, built.plan, facts)
        except PlanError as exc:
            # A full or failing disk must not stop a model whose plan is built: it serves
            # from memory and is built again at the next start.
            log.warning("model %s: plan %s built but not cached: %s", model.name, key.name, exc)
            return built.plan, f"not cached: {exc}"
        log.info("model %s: plan %s stored in %.1fs", model.name, path, facts["build_seconds"])
        return built.plan, None

    def layer_placement(self, key: PlanKey) -> Optional[List[Dict[str, Any]]]:
        """Where the stored plan's layers run, as the backend reported at build time."""
        manifest = self.store.manifest(key.name) or {}
        rows = manifest.get("layer_placement")
        return list(rows) if isinstance(rows, list) else None

    def profile(self, key: PlanKey) -> Optional[Dict[str, Any]]:
        """The measured profile stored with the plan (see edged.model_loading), if any."""
        doc = (self.store.manifest(key.name) or {}).get("profile")
        return dict(doc) if isinstance(doc, dict) else None

    def record_profile(self, key: PlanKey, profile: Dict[str, Any]) -> None:
        self.store.annotate(key, {"profile": profile})

    def accuracy(self, key: PlanKey) -> Optional[Dict[str, Any]]:
        """The accuracy verdict stored with the plan (see edged.accuracy), if any."""
        doc = (self.store.manifest(key.name) or {}).get("accuracy")
        return dict(doc) if isinstance(doc, dict) else None

    def record_accuracy(self, key: PlanKey, verdict: Dict[str, Any]) -> None:
        self.store.annotate(key, {"accuracy": verdict})

    def plan_bytes(self, key: PlanKey) -> bytes:
        """The stored plan's verified bytes; PlanError when it is gone (evicted, quarantined)."""
        plan = self.store.get(key)
        if plan is None:
            raise PlanError(f"plan {key.name}: no longer in {self.store.root}")
        return plan

    def release(self, key: PlanKey) -> None:
        self.store.release(key)

    def manifests(self) -> List[dict]:  # type: ignore[type-arg]
        return [p.manifest for p in self.store.entries()]
