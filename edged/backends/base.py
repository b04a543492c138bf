"""The one interface every inference backend implements.

A backend turns a model into *plan bytes* (a TensorRT engine, an optimised ONNX
Runtime model), loads plan bytes into a :class:`Runner`, and reports its version.
Everything above this interface is backend-agnostic.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from edged.backends.input_prefix import InputPrefix
from edged.formats.spec import ModelFormat

__all__ = ["Backend", "BuildOptions", "BuiltPlan", "Runner", "TensorSpec", "InferTimings"]

# Called with a fraction in [0, 1] (or None when the backend cannot tell) and a phase name.
ProgressCallback = Callable[[Optional[float], str], None]


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. ``shape`` holds ``None`` for dynamic dimensions."""

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: str  # numpy dtype name: "float32", "float16", "uint8", "int64", ...


@dataclass(frozen=True)
class BuildOptions:
    """Everything that changes a plan's bytes; the plan cache key covers all of it."""

    precision: str = "fp32"
    device: str = "cpu"  # resolved target: cpu | gpu | gpu0.. | dla0 | dla1
    gpu_fallback: bool = True
    batch: int = 1
    threads: int = 0
    spin_wait_us: int = 200  # how a plan runs, not what it is: not in the key
    instances: int = 1  # engines loaded from the plan for one model (the same: not in the key)
    workspace_bytes: int = 1 << 30
    extra: Mapping[str, Any] = field(default_factory=dict)
    # How to read the model; its other files are keyed by content (edged.formats.hashing).
    model_format: ModelFormat = field(default_factory=ModelFormat)
    # Preprocessing folded into the plan (edged.backends.input_prefix); None: done on the host.
    input_prefix: Optional[InputPrefix] = None

    def as_key_document(self) -> Dict[str, Any]:
        doc = {
            "precision": self.precision,
            "device": self.device,
            "gpu_fallback": self.gpu_fallback,
            "batch": self.batch,
            "workspace_bytes": self.workspace_bytes,
        }
        doc.update({f"extra.{k}": v for k, v in sorted(self.extra.items())})
        if self.model_format.type != "onnx":  # ONNX keys stay as they were before formats
            doc["format"] = self.model_format.key_document()
        if self.input_prefix is not None:  # plans without a prefix keep the keys they had
            doc["input_prefix"] = self.input_prefix.key_document()
        return doc


@dataclass
class BuiltPlan:
    plan: bytes
    build_log: List[str] = field(default_factory=list)
    layer_placement: Optional[List[Dict[str, Any]]] = None
    # TensorRT >= 10.15 ONNX parsers: each node's DLA capability before the build ("name", "device")
    dla_capability: Optional[List[Dict[str, Any]]] = None


@dataclass
class InferTimings:
    """Where the backend measures them, device-side times of the last call (ms)."""

    h2d_ms: Optional[float] = None
    compute_ms: Optional[float] = None
    d2h_ms: Optional[float] = None


class Runner(abc.ABC):
    """A loaded plan, ready to run batches. Not thread-safe: one worker owns it."""

    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    last_timings: InferTimings

    def __init__(self) -> None:
        self._closed = False
        self.last_timings = InferTimings()

    def infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one batch. ``feeds`` maps every input name to an array of its dtype."""
        if self._closed:
            raise RuntimeError("runner is closed")
        missing = [spec.name for spec in self.inputs if spec.name not in feeds]
        if missing:
            raise ValueError(f"missing inputs: {', '.join(missing)}")
        return self._infer_impl(feeds)

    def attach_thread(self) -> None:
        """Called once by the thread that will make this runner's calls (the pipeline's infer
        thread), before its first call. Default: nothing; ONNX Runtime pins it on hosts where
        edged lays out the engine's cores (edged.backends.onnxruntime.cores)."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close_impl()

    @abc.abstractmethod
    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]: ...

    def _close_impl(self) -> None:
        """Release backend resources; default: nothing to release."""


class Backend(abc.ABC):
    """Builds and loads plans for one inference library."""

    name: str = ""
    # Whether edged.plans.build_process may build this backend's plans in a child process
    # (``get_backend(name)`` there must build what it builds here).
    builds_in_child: bool = False

    def default_instances(self, threads: int, device: str) -> Tuple[int, str]:
        """How many engines of a model whose config leaves ``instances`` to edged, with
        ``threads`` and ``device`` from its config, serve it on this host, and why."""
        return 1, "one engine"

    def core_kept(self, threads: int, device: str, instances: int = 1) -> str:
        """How this backend's engine, with ``threads`` and ``instances`` from the model's
        config on ``device``, leaves a core to edged's own threads on this host; empty where
        it does not. Where it does, batched preprocessing runs there (edged.pipeline.folding)."""
        return ""

    @abc.abstractmethod
    def version(self) -> str:
        """Full version of the underlying library; part of every plan key."""

    @abc.abstractmethod
    def build_plan(
        self, model_path: str, options: BuildOptions, progress: Optional[ProgressCallback] = None
    ) -> BuiltPlan:
        """Build plan bytes for this machine from a model file."""

    @abc.abstractmethod
    def load_plan(self, plan: bytes, options: BuildOptions) -> Runner:
        """Load plan bytes built by :meth:`build_plan`; raise PlanError if they are foreign."""

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "version": self.version()}
