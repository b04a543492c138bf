"""Running an engine: pinned (or, on integrated GPUs, mapped zero-copy) buffers, two
execution slots on two streams, and CUDA events splitting each call into
host-to-device / compute / device-to-host like trtexec does."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Set, Tuple

import numpy as np

from edged.backends.base import Runner, TensorSpec
from edged.backends.tensorrt.api import TrtApi
from edged.backends.tensorrt.builder import trt_dtype_name
from edged.backends.tensorrt.options import CONTEXT_SLOTS
from edged.cuda import D2H, H2D
from edged.errors import BackendError

__all__ = ["TensorRTRunner"]


class _Slot:
    """One execution context with its own stream, buffers and events. Two slots let the
    copies of one batch overlap the compute of the other (``submit`` then ``collect``)."""

    def __init__(self, runner: TensorRTRunner, profile: int) -> None:
        cuda = runner.cuda
        self.context = runner.engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context (out of device memory?)")
        self.stream = cuda.stream()
        self.profile = profile
        # Each slot runs on its own optimisation profile: 8.5 gives profile 0 to the first
        # context only, 8.6 to the first that asks, 10.x to all; every version documents one
        # profile per concurrently used context (NvInferRuntime.h, IExecutionContext).
        if runner.dynamic and not self.context.set_optimization_profile_async(profile, self.stream.handle):
            self.stream.free()
            raise BackendError(f"TensorRT refused optimisation profile {profile} for execution slot {profile}")
        self.events = [cuda.event() for _ in range(4)]
        self.host: Dict[str, Any] = {}
        self.device: Dict[str, Any] = {}
        self.busy = False
        for spec in runner.inputs + runner.outputs:
            nbytes = runner.max_bytes[spec.name]
            self.host[spec.name] = cuda.host_alloc(nbytes, mapped=runner.zero_copy)
            # Zero-copy: the GPU works on the mapped host pages, no device copy exists.
            if runner.zero_copy:
                address = self.host[spec.name].device_ptr
            else:
                self.device[spec.name] = cuda.malloc(nbytes)
                address = self.device[spec.name].device_ptr
            self.context.set_tensor_address(spec.name, address)

    def release(self) -> None:
        for res in [*self.host.values(), *self.device.values(), *self.events, self.stream]:
            res.free()
        self.context = None


class TensorRTRunner(Runner):
    """Runs on ``cuda``'s device from any thread: the pipeline loads a plan on one thread
    and infers on another, and CUDA's current device is per thread, so every entry point
    makes the device current before touching the engine, its contexts or buffers."""

    def __init__(self, api: TrtApi, cuda: Any, engine: Any, runtime: Any, slots: int = CONTEXT_SLOTS) -> None:
        super().__init__()
        self.api = api
        self.cuda = cuda
        cuda.use()
        self.engine = engine
        self._runtime = runtime  # the engine must not outlive its runtime
        props = cuda.properties()
        self.zero_copy = bool(props.integrated and props.can_map_host_memory)
        self.inputs, self.outputs = [], []
        self.max_bytes: Dict[str, int] = {}
        self._max_shape: Dict[str, Tuple[int, ...]] = {}
        self._dynamic: Set[str] = set()
        trt = api.trt
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dtype = trt_dtype_name(engine.get_tensor_dtype(name))
            spec = TensorSpec(name, tuple(d if d >= 0 else None for d in shape), dtype)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input and -1 in shape:
                self._dynamic.add(name)
                lo, _, hi = (tuple(int(d) for d in dims) for dims in engine.get_tensor_profile_shape(name, 0))
                shape = hi
                if lo == hi:  # a static profile (DLA engines): callers must pad to it
                    spec = TensorSpec(name, hi, dtype)
            (self.inputs if is_input else self.outputs).append(spec)
            self._max_shape[name] = shape
        batch = max((self._max_shape[s.name][0] for s in self.inputs if self._max_shape[s.name]), default=1)
        for spec in self.outputs:
            # Output batch follows the inputs' profile maximum.
            dims = self._max_shape[spec.name]
            self._max_shape[spec.name] = tuple(batch if d < 0 else d for d in dims)
        for name, dims in self._max_shape.items():
            itemsize = np.dtype(next(s.dtype for s in self.inputs + self.outputs if s.name == name)).itemsize
            self.max_bytes[name] = int(np.prod(dims, dtype=np.int64)) * itemsize
        self.dynamic = bool(self._dynamic)
        if self.dynamic:
            # A plan built with fewer profiles than slots (DLA plans, older plans) runs with
            # as many contexts as it has profiles.
            slots = max(1, min(slots, int(engine.num_optimization_profiles)))
        self._slots: List[_Slot] = []
        try:
            for index in range(slots):
                self._slots.append(_Slot(self, index))
        except BaseException:
            self._close_impl()
            raise
        self._next = 0

    # -- double-buffered API -----------------------------------------------------------

    def submit(self, feeds: Mapping[str, np.ndarray]) -> int:
        """Queue one batch on the next free slot and return the slot; ``collect`` it later."""
        self.cuda.use()
        index = self._next
        slot = self._slots[index]
        if slot.busy:
            raise BackendError(f"slot {index} still holds an uncollected batch")
        self._next = (index + 1) % len(self._slots)
        start, after_h2d, after_compute, end = slot.events
        start.record(slot.stream)
        for spec in self.inputs:
            array = np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype)
            if array.nbytes > self.max_bytes[spec.name]:
                raise BackendError(
                    f"input {spec.name!r}: shape {array.shape} exceeds the plan's {self._max_shape[spec.name]}"
                )
            if spec.name in self._dynamic and not slot.context.set_input_shape(spec.name, array.shape):
                raise BackendError(
                    f"input {spec.name!r}: shape {array.shape} is outside the plan's optimisation profile"
                )
            slot.host[spec.name].array(array.dtype, array.shape)[...] = array
            if not self.zero_copy:
                self.cuda.copy_async(
                    slot.device[spec.name].device_ptr, slot.host[spec.name].host_ptr, array.nbytes, H2D, slot.stream
                )
        after_h2d.record(slot.stream)
        if not slot.context.execute_async_v3(slot.stream.handle):
            raise BackendError("execute_async_v3 failed; see the TensorRT log")
        after_compute.record(slot.stream)
        if not self.zero_copy:
            for spec in self.outputs:
                nbytes = self._output_shape_bytes(slot, spec)[1]
                self.cuda.copy_async(
                    slot.host[spec.name].host_ptr, slot.device[spec.name].device_ptr, nbytes, D2H, slot.stream
                )
        end.record(slot.stream)
        slot.busy = True
        return index

    def collect(self, index: int) -> Dict[str, np.ndarray]:
        self.cuda.use()
        slot = self._slots[index]
        if not slot.busy:
            raise BackendError(f"slot {index} has no batch to collect")
        start, after_h2d, after_compute, end = slot.events
        end.synchronize()
        slot.busy = False
        self.last_timings.h2d_ms = after_h2d.elapsed_ms(start)
        self.last_timings.compute_ms = after_compute.elapsed_ms(after_h2d)
        self.last_timings.d2h_ms = end.elapsed_ms(after_compute)
        outputs = {}
        for spec in self.outputs:
            shape, _ = self._output_shape_bytes(slot, spec)
            outputs[spec.name] = slot.host[spec.name].array(spec.dtype, shape).copy()
        return outputs

    def _output_shape_bytes(self, slot: _Slot, spec: TensorSpec) -> Tuple[Tuple[int, ...], int]:
        shape = tuple(int(d) for d in slot.context.get_tensor_shape(spec.name))
        return shape, int(np.prod(shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize

    # -- Runner ------------------------------------------------------------------------

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return self.collect(self.submit(feeds))

    def _close_impl(self) -> None:
        self.cuda.use()
        for slot in self._slots:
            slot.release()
        self._slots = []
        self.engine = None
        self._runtime = None
