"""Running an implicit-batch engine (UFF models on TensorRT 8.5/8.6).

Such an engine takes the binding-index call: ``IExecutionContext::enqueue(batchSize, bindings,
stream, inputConsumed)``, Python ``execute_async``. ``enqueueV2``/``executeV2`` "only work for
execution contexts built with full dimension networks" and ``setBindingDimensions`` "requires
the engine to be built without an implicit batch dimension" (NvInferRuntime.h, 8.5.2), so the
name-based path of runner.py cannot drive it. Binding shapes leave the batch out; a call runs
any batch up to ``engine.max_batch_size``. One context on one stream: no profiles to share.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import numpy as np

from edged.backends.base import Runner, TensorSpec
from edged.backends.tensorrt.api import TrtApi, gate
from edged.backends.tensorrt.builder import trt_dtype_name
from edged.cuda import D2H, H2D
from edged.errors import BackendError

__all__ = ["ImplicitBatchRunner", "is_implicit_batch"]


@gate(max_major=8)  # only 8.x parsers (UFF) make implicit-batch networks; the binding calls are gone in 10
def is_implicit_batch(api: TrtApi, engine: Any) -> bool:
    return bool(engine.has_implicit_batch_dimension)


@gate(max_major=8)
class ImplicitBatchRunner(Runner):
    def __init__(self, api: TrtApi, cuda: Any, engine: Any, runtime: Any) -> None:
        super().__init__()
        self.cuda = cuda
        cuda.use()
        self.engine, self._runtime = engine, runtime
        self.max_batch = int(engine.max_batch_size)
        self.inputs: List[TensorSpec] = []
        self.outputs: List[TensorSpec] = []
        self._order: List[TensorSpec] = []
        self._buffers: Dict[str, Any] = {}
        self._host: Dict[str, Any] = {}
        for index in range(engine.num_bindings):
            dims = tuple(int(d) for d in engine.get_binding_shape(index))
            spec = TensorSpec(
                engine.get_binding_name(index), (None, *dims), trt_dtype_name(engine.get_binding_dtype(index))
            )
            (self.inputs if engine.binding_is_input(index) else self.outputs).append(spec)
            self._order.append(spec)
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context (out of device memory?)")
        self.stream = cuda.stream()
        for spec in self._order:
            nbytes = self._nbytes(spec, self.max_batch)
            self._host[spec.name] = cuda.host_alloc(nbytes)
            self._buffers[spec.name] = cuda.malloc(nbytes)

    def _nbytes(self, spec: TensorSpec, batch: int) -> int:
        return batch * int(np.prod([d for d in spec.shape[1:]], dtype=np.int64)) * np.dtype(spec.dtype).itemsize

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.cuda.use()
        batch = 0
        for spec in self.inputs:
            array = np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype)
            if tuple(array.shape[1:]) != tuple(spec.shape[1:]) or not 1 <= array.shape[0] <= self.max_batch:
                raise BackendError(
                    f"input {spec.name!r}: shape {array.shape} does not fit the plan's [1..{self.max_batch}]"
                    f"x{list(spec.shape[1:])}"
                )
            batch = batch or array.shape[0]
            self._host[spec.name].array(array.dtype, array.shape)[...] = array
            self.cuda.copy_async(
                self._buffers[spec.name].device_ptr, self._host[spec.name].host_ptr, array.nbytes, H2D, self.stream
            )
        bindings = [self._buffers[spec.name].device_ptr for spec in self._order]
        if not self.context.execute_async(batch, bindings, self.stream.handle):
            raise BackendError("execute_async failed; see the TensorRT log")
        for spec in self.outputs:
            nbytes = self._nbytes(spec, batch)
            self.cuda.copy_async(
                self._host[spec.name].host_ptr, self._buffers[spec.name].device_ptr, nbytes, D2H, self.stream
            )
        self.stream.synchronize()
        return {
            spec.name: self._host[spec.name].array(spec.dtype, (batch, *spec.shape[1:])).copy() for spec in self.outputs
        }

    def _close_impl(self) -> None:
        self.cuda.use()
        for res in [*self._host.values(), *self._buffers.values(), self.stream]:
            res.free()
        self._host, self._buffers = {}, {}
        self.context = self.engine = self._runtime = None
