"""ONNX Runtime backend.

Its "plan" is the graph-optimised model that ONNX Runtime writes through
``SessionOptions.optimized_model_filepath``. At the full optimisation level that file
may contain layout-specific fused kernels for this CPU, which is why it is cached
per platform like a TensorRT engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from edged.backends.base import Backend, BuildOptions, BuiltPlan, ProgressCallback, Runner, TensorSpec
from edged.backends.calibration import calibration_set
from edged.backends.onnxruntime.cores import (
    KEEP_CORE_FROM,
    CallerCore,
    EngineCores,
    cpu_text,
    engine_cores,
    host_cores,
)
from edged.backends.onnxruntime.precision import convert_model
from edged.cpu_limits import cpu_quota, pinning_allowed, quota_cores
from edged.errors import BackendError, BackendUnavailable, PlanError
from edged.versions import version_tuple

__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeRunner", "spin_entries"]

log = logging.getLogger(__name__)

# ONNX Runtime's tensor type strings -> numpy dtype names.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            "backend 'onnxruntime' needs the onnxruntime package: pip install onnxruntime"
        ) from exc
    return onnxruntime


def _specs(values: Any) -> List[TensorSpec]:
    specs = []
    for value in values:
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in value.shape)
        specs.append(TensorSpec(value.name, shape, _ORT_TYPES.get(value.type, value.type)))
    return specs


# session.force_spinning_stop (microsoft/onnxruntime PR 11841, release 1.12): the pool stops
# spinning when a run ends. session.intra_op.spin_duration_us (PR 27916, merged 2026-03-31):
# spinning within a run is bounded in time. The first release with the second is dated 1.26
# by third-party notes and not confirmed here; ONNX Runtime ignores keys it does not know,
# and the stop after each run holds either way.
_STOP_AFTER_RUN = (1, 12)
_BOUNDED_SPIN = (1, 26)


def spin_entries(ort_version: str, spin_wait_us: int) -> Dict[str, str]:
    """Session config entries for pool threads that busy-wait at most ``spin_wait_us`` for
    work within a run and sleep as soon as a run ends.

    By default ONNX Runtime's pool threads spin on after a run: a whole core each for as
    long as the next frame takes to come, measured here over 30 ms pauses
    (tests/backends/test_onnxruntime_sessions.py), taken from edged's own threads, other
    models and decoders, and power on a device. Not spinning at all costs the engine its fast
    hand-offs between operators: MobileNetV2-shaped at batch 1 on 2 cores, 205 frames/s
    without spinning, 243 with 200 us of it and 245 unbounded (tools/bench_engine_calls.py);
    on 16 cores 296 without against 498 unbounded. Where the stop after a run is missing
    (before 1.12), the threads do not spin."""
    version = version_tuple(ort_version)[:2]
    if spin_wait_us <= 0 or version < _STOP_AFTER_RUN:
        return {"session.intra_op.allow_spinning": "0"}
    entries = {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}
    if version >= _BOUNDED_SPIN:
        entries["session.intra_op.spin_duration_us"] = str(spin_wait_us)
    return entries


@contextlib.contextmanager
def _plan_path(plan: bytes) -> Iterator[Union[str, bytes]]:
    """The plan as a path ONNX Runtime can open, held in memory only while it loads.
    An InferenceSession made from bytes keeps them for its whole life (to rebuild itself
    if providers change, which edged never asks): a second copy of every model's weights,
    13 MB per MobileNetV2-sized session (tools/bench_sources.py). An anonymous memory
    file needs no disk space, so a full disk cannot stop a cached plan from loading."""
    create = getattr(os, "memfd_create", None)
    try:
        fd = create("edged-plan", 0) if create is not None else -1
    except OSError:  # a seccomp filter without it, or no memory: the bytes it is, copy and all
        fd = -1
    if fd < 0:
        yield plan
        return
    try:
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(plan)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


class OnnxRuntimeRunner(Runner):
    def __init__(self, session: Any, cores: Optional[EngineCores] = None, caller: Optional[CallerCore] = None) -> None:
        super().__init__()
        self._session = session
        self.inputs = _specs(session.get_inputs())
        self.outputs = _specs(session.get_outputs())
        self._output_names = [spec.name for spec in self.outputs]
        self.cores = cores
        self._caller_cpus = cores.caller_cpus if cores is not None else frozenset()
        self._caller = caller if self._caller_cpus else None
        self._attached: Optional[int] = None  # the infer thread, until it holds the caller core

    def attach_thread(self) -> None:
        """On the pinned layout the calling thread, which computes a share of every operator,
        runs on its own core: not a pool thread's, nor the one kept for edged's threads."""
        if self._caller is not None:
            self._attached = threading.get_ident()
            if not self._pin_caller():
                log.info(
                    "onnxruntime engine: its calling thread runs unpinned while another engine's holds CPUs %s",
                    cpu_text(self._caller_cpus),
                )

    def _pin_caller(self) -> bool:
        """Whether the calling thread now holds its core."""
        assert self._caller is not None
        if not self._caller.claim(self):
            return False  # another engine's thread has the core: run unpinned, try again when it is free
        self._attached = None
        try:
            os.sched_setaffinity(0, self._caller_cpus)
        except OSError as exc:  # a cpuset narrowed since the layout was made
            self._caller.release(self)
            log.warning("cannot pin the engine's calling thread to CPUs %s: %s", cpu_text(self._caller_cpus), exc)
            return False
        return True

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        waiting = self._attached is not None and self._caller is not None and self._caller.free
        if waiting and threading.get_ident() == self._attached and self._pin_caller():
            log.info("onnxruntime engine: its calling thread took CPUs %s over", cpu_text(self._caller_cpus))
        start = time.perf_counter()
        values = self._session.run(self._output_names, dict(feeds))
        self.last_timings.compute_ms = (time.perf_counter() - start) * 1000.0
        return dict(zip(self._output_names, values))

    def _close_impl(self) -> None:
        self._session = None
        if self._caller is not None:
            self._caller.release(self)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    builds_in_child = True

    def __init__(self, cores: Optional[Callable[[], List[Tuple[int, ...]]]] = None) -> None:
        self._ort = _import_ort()
        self._host_cores = cores  # the host's physical cores; None: this host's (host_cores)

    def version(self) -> str:
        return str(self._ort.__version__)

    def _session_options(self, options: BuildOptions) -> Any:
        so = self._ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        for key, value in spin_entries(self.version(), options.spin_wait_us).items():
            so.add_session_config_entry(key, value)
        if options.batch > 1:
            # Batches of 1 to `batch` frames: the memory pattern ONNX Runtime plans per input
            # shape only adds to its arena (MobileNetV2-shaped, batches 1-8: 111 -> 96 MB).
            so.enable_mem_pattern = False
        return so

    def _providers(self, device: str) -> List[str]:
        try:
            wanted = _PROVIDERS[device]
        except KeyError:
            raise BackendError(f"onnxruntime cannot run on device {device!r}; use cpu or gpu") from None
        available = set(self._ort.get_available_providers())
        if wanted[0] not in available:
            raise BackendUnavailable(f"onnxruntime here has no {wanted[0]} (available: {', '.join(sorted(available))})")
        return wanted

    def build_plan(
        self, model_path: str, options: BuildOptions, progress: Optional[ProgressCallback] = None
    ) -> BuiltPlan:
        so = self._session_options(options)
        # This session only optimises and writes the graph: no pool, so none sized or pinned.
        so.intra_op_num_threads = 1
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        configured = model_path  # errors name it, not a converted copy
        with tempfile.TemporaryDirectory(prefix="edged-ort-") as tmp:
            if options.precision != "fp32":
                if progress:
                    progress(None, f"converting to {options.precision}")
                model_path = convert_model(model_path, options.precision, tmp, calibration_set(options))
            if options.input_prefix is not None:
                # After the precision conversion: the prefix's arithmetic stays float32, as on the host.
                model_path = options.input_prefix.apply(model_path, tmp)
            out = os.path.join(tmp, "optimized.onnx")
            so.optimized_model_filepath = out
            if progress:
                progress(None, "optimising")
            try:
                self._ort.InferenceSession(model_path, so, providers=self._providers(options.device))
            except (BackendUnavailable, BackendError):
                raise
            except Exception as exc:  # ORT raises its own exception types per failure
                raise BackendError(f"{configured}: onnxruntime cannot load the model: {exc}") from exc
            with open(out, "rb") as handle:
                plan = handle.read()
        if progress:
            progress(1.0, "done")
        return BuiltPlan(plan=plan, build_log=[f"optimised with onnxruntime {self.version()} ({options.precision})"])

    def load_plan(self, plan: bytes, options: BuildOptions) -> Runner:
        so = self._session_options(options)
        # The plan is already optimised; running the optimisers again only costs start time.
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        cores = None
        if options.device == "cpu":
            cores = self.engine_cores(options.threads, options.instances)
            so.intra_op_num_threads = cores.threads
            for key, value in cores.session_entries().items():
                so.add_session_config_entry(key, value)
        else:
            # Never 0: ONNX Runtime would size and pin its pool by the whole machine (cores.py).
            so.intra_op_num_threads = options.threads or quota_cores(cpu_quota(), len(self._cores()))
        try:
            with _plan_path(plan) as path:
                session = self._ort.InferenceSession(path, so, providers=self._providers(options.device))
        except (BackendUnavailable, BackendError):
            raise
        except Exception as exc:
            raise PlanError(f"onnxruntime cannot load the plan: {exc}") from exc
        if cores is not None:
            log.info("onnxruntime engine: %s", cores.reason)
        return OnnxRuntimeRunner(session, cores, _CALLER_CORE)

    def _cores(self) -> List[Tuple[int, ...]]:
        return self._host_cores() if self._host_cores is not None else host_cores()

    def engine_cores(self, threads: int, instances: int = 1) -> EngineCores:
        """Where a CPU engine with ``threads`` (the model's setting), one of ``instances``,
        runs on this host."""
        return engine_cores(threads, self._cores(), self.version(), instances, pinning_allowed(), cpu_quota())

    def default_instances(self, threads: int, device: str) -> Tuple[int, str]:
        """Two engines on hosts of ``KEEP_CORE_FROM`` cores or more with ``threads: 0``:
        there one engine's operators scale poorly past half the cores, and a second one
        fills the first's gaps. 16 cores, MobileNetV2-shaped: at batch 1, 1.34-1.45 times
        the engine alone in a tight loop, where one engine gave 0.79-0.88, for about the same
        latency at half load; at batch 8, 0.99-1.08 against 0.85-0.93 (docs/preprocessing.md,
        "Fifth pass"). ONNX Runtime models on the CPU get two instances by default in Triton
        too. Elsewhere one: on 2 cores two single-thread engines cost latency."""
        if device != "cpu" or threads != 0:
            return 1, "one engine"
        count = quota_cores(cpu_quota(), len(self._cores()))
        if count < KEEP_CORE_FROM:
            return 1, f"one engine on {count} cores (fewer than {KEEP_CORE_FROM})"
        return 2, f"two engines on {count} cores"

    def core_kept(self, threads: int, device: str, instances: int = 1) -> str:
        if device != "cpu":
            return ""
        cores = self.engine_cores(threads, instances)
        return cores.reason if cores.keeps_core else ""

    def load_model(self, model_path: str, options: BuildOptions) -> Runner:
        """Build and load in one step, without a cache (benchmarks, checks)."""
        return self.load_plan(self.build_plan(model_path, options).plan, options)


# One per process, whichever backend object loaded the engine.
_CALLER_CORE = CallerCore()
