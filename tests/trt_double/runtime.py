"""Run side of the TensorRT test double: Runtime, engine, execution context, inspector.
Execution runs the plan's ONNX model in ONNX Runtime, reading inputs from and writing
outputs to the addresses given with set_tensor_address (host memory, see memory.py)."""

from __future__ import annotations

import ctypes
import json
import weakref
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tests.trt_double.build import read_device
from tests.trt_double.builder import IHostMemory, unpack_plan
from tests.trt_double.memory import check_range, current_device
from tests.trt_double.precision import quantize_inputs, session
from tests.trt_double.surface import Guarded

# UINT8 I/O: network-level uint8 inputs that a cast layer turns into floats (DataType::kUINT8,
# NvInferRuntimeBase.h; ICastLayer from 8.6, shared/reference/tensorrt-api/8.6.json).
_NP = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
}
_ORT_NP = {
    "tensor(float)": "FLOAT",
    "tensor(float16)": "HALF",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(uint8)": "UINT8",
}


class Runtime(Guarded):
    _trt_class = "Runtime"

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self._dla_core = -1
        self._double.loggers.append(logger)

    DLA_core = property(lambda self: self._dla_core, lambda self, v: object.__setattr__(self, "_dla_core", int(v)))
    num_DLA_cores = property(lambda self: self._double.dla_cores)

    def deserialize_cuda_engine(self, plan: Any) -> Optional[ICudaEngine]:
        double = self._double
        device = current_device()
        double.device_calls.append(("deserialize", device))
        unpacked = unpack_plan(bytes(plan))
        if unpacked is None:
            double.log("ERROR", "Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic Tag does not match")
            return None
        header, onnx_bytes = unpacked
        if header["trt"] != double.version_string:
            double.log("ERROR", "The engine plan file is not compatible with this version of TensorRT, expecting "
                       f"library version {double.version_string} got {header['trt']}, please rebuild.")  # fmt: skip
            return None
        if tuple(header["compute"]) != double.compute:
            ours, theirs = ".".join(map(str, double.compute)), ".".join(map(str, header["compute"]))
            double.log("ERROR", "The engine plan file is generated on an incompatible device, expecting compute "
                       f"{ours} got compute {theirs}, please rebuild.")  # fmt: skip
            return None
        if header["dla_core"] is not None and double.dla_cores == 0:
            double.log("ERROR", "Cannot deserialize a DLA engine: this device has no DLA")
            return None
        # The core is chosen here, from the runtime, not from the plan: unset means DLA0.
        core = max(self._dla_core, 0) if header["dla_core"] is not None else None
        return double.bind("ICudaEngine")(header, onnx_bytes, core, device)  # type: ignore[no-any-return]


class ICudaEngine(Guarded):
    _trt_class = "ICudaEngine"

    def __init__(self, header: Dict[str, Any], onnx_bytes: bytes, dla_core: Optional[int], device: int = 0) -> None:
        self._header, self._onnx = header, onnx_bytes
        self._dla_core = dla_core  # what the double ran on; tests read it
        self._device = device  # the CUDA device the engine lives on
        self._session = session(header, onnx_bytes)  # FP16/INT8 plans compute as precision.py documents
        self._contexts: Any = weakref.WeakSet()  # live execution contexts, for profile ownership
        self._created = 0
        self._io: List[Tuple[str, bool, Tuple[int, ...], str]] = []
        for value, is_input in [(v, True) for v in self._session.get_inputs()] + [
            (v, False) for v in self._session.get_outputs()
        ]:
            shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
            self._io.append((value.name, is_input, shape, _ORT_NP.get(value.type, "FLOAT")))

    num_io_tensors = property(lambda self: len(self._io))
    num_layers = property(lambda self: len(self._header["placement"]))

    def _find(self, name: str) -> Tuple[str, bool, Tuple[int, ...], str]:
        return next(io for io in self._io if io[0] == name)

    def get_tensor_name(self, i: int) -> str:
        return self._io[i][0]

    def get_tensor_mode(self, name: str) -> Any:
        return self._trt.TensorIOMode.INPUT if self._find(name)[1] else self._trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        return self._find(name)[2]

    def get_tensor_dtype(self, name: str) -> Any:
        return getattr(self._trt.DataType, self._find(name)[3])

    num_optimization_profiles = property(lambda self: max(len(self._header["profiles"]), 1))
    has_implicit_batch_dimension = property(lambda self: self._implicit())

    def _implicit(self) -> bool:
        return self._header.get("implicit_batch") is not None

    max_batch_size = property(lambda self: self._max_batch())

    def _max_batch(self) -> int:
        return int(self._header.get("implicit_batch") or 1)

    num_bindings = property(lambda self: len(self._io))

    def get_binding_name(self, index: int) -> str:
        return self._io[index][0]

    def binding_is_input(self, index: int) -> bool:
        return self._io[index][1]

    def get_binding_shape(self, index: int) -> Tuple[int, ...]:
        """Implicit-batch engines leave the batch out of binding shapes."""
        shape = self._io[index][2]
        return shape[1:] if self._implicit() else shape

    def get_binding_dtype(self, index: int) -> Any:
        return getattr(self._trt.DataType, self._io[index][3])

    def get_tensor_profile_shape(self, name: str, profile: int) -> List[Tuple[int, ...]]:
        return [tuple(s) for s in self._header["profiles"][profile][name]]

    def _dynamic(self) -> bool:
        return bool(self._header["profiles"])

    def _holder_of(self, profile: int, asking: Any) -> Any:
        """The other live context that holds ``profile``, if any."""
        return next((c for c in self._contexts if c is not asking and c._profile == profile), None)

    def _on_own_device(self, call: str) -> bool:
        device = current_device()
        self._double.device_calls.append((call, device))
        if device != self._device:
            self._double.log("ERROR", f"{call}: engine deserialised on device {self._device}, current device {device}")
            return False
        return True

    def create_execution_context(self) -> Optional[IExecutionContext]:
        if not self._on_own_device("context"):
            return None
        return self._double.bind("IExecutionContext")(self)  # type: ignore[no-any-return]

    def create_engine_inspector(self) -> EngineInspector:
        return self._double.bind("EngineInspector")(self)  # type: ignore[no-any-return]

    def serialize(self) -> IHostMemory:
        from tests.trt_double.builder import pack_plan

        return self._double.bind("IHostMemory")(pack_plan(self._header, self._onnx))  # type: ignore[no-any-return]


class IExecutionContext(Guarded):
    _trt_class = "IExecutionContext"

    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self._addresses: Dict[str, int] = {}
        self._shapes: Dict[str, Tuple[int, ...]] = {}
        # Which profile a new context gets (NvInferRuntime.h, createExecutionContext): 8.5.2 "the
        # first execution context created will call setOptimizationProfile(0) implicitly", the
        # others get none; 8.6.1 gives profile 0 "if there are no other execution contexts
        # assigned to optimization profile 0"; 10.x assigns profile 0 to every new context.
        double = engine._double
        if double.major >= 10 or not engine._dynamic():
            self._profile = 0
        elif double.version == "8.5":
            self._profile = 0 if not engine._created else -1
        else:
            self._profile = -1 if engine._holder_of(0, self) is not None else 0
        engine._created += 1
        engine._contexts.add(self)
        double.contexts.add(self)

    active_optimization_profile = property(lambda self: self._profile)

    def set_optimization_profile_async(self, profile_index: int, stream: int) -> bool:
        """Before 10, "each execution context in concurrent use must use a separate
        optimization profile" (NvInferRuntime.h, class IExecutionContext, 8.5.2/8.6.1) and the
        library refuses a profile another context holds (NVIDIA/TensorRT issues 1597, 4127)."""
        engine, double = self._engine, self._double
        if not 0 <= profile_index < engine.num_optimization_profiles:
            double.log("ERROR", f"setOptimizationProfileAsync: profile index {profile_index} is out of range")
            return False
        if double.major < 10 and engine._holder_of(profile_index, self) is not None:
            double.log(
                "ERROR",
                f"Profile {profile_index} has been chosen by another IExecutionContext. Use another profileIndex "
                "or destroy the IExecutionContext that uses this profile.",
            )
            return False
        self._profile = profile_index
        self._shapes.clear()
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        self._addresses[name] = int(address)
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        if self._profile < 0:
            self._double.log("ERROR", "setInputShape: no optimization profile is set for this execution context")
            return False
        lo, _, hi = self._engine.get_tensor_profile_shape(name, self._profile)
        shape = tuple(int(d) for d in shape)
        if not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
            self._double.log("ERROR", f"setInputShape: {name} shape {shape} is outside the profile [{lo}, {hi}]")
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        _, is_input, shape, _ = self._engine._find(name)
        if is_input:
            return self._shapes.get(name, shape)
        batch = next(iter(self._shapes.values()), (1,))[0]
        return tuple(batch if d < 0 else d for d in shape)

    def execute_async(self, batch_size: int, bindings: Any, stream_handle: int, input_consumed: Any = None) -> bool:
        """enqueue(batchSize, bindings, stream, inputConsumed): the call an implicit-batch engine
        runs with (NvInferRuntime.h 8.5.2); bindings are device pointers by binding index."""
        engine, double = self._engine, self._double
        if not engine._implicit():
            double.log("ERROR", "enqueue: the engine has explicit batch; use enqueueV3")
            return False
        if not 1 <= int(batch_size) <= engine._max_batch():
            double.log("ERROR", f"enqueue: batch size {batch_size} exceeds the engine's {engine._max_batch()}")
            return False
        for (name, is_input, shape, _), address in zip(engine._io, list(bindings)):
            self._addresses[name] = int(address)
            if is_input:
                self._shapes[name] = (int(batch_size), *shape[1:])
        return self._run(stream_handle)

    def execute_async_v3(self, stream_handle: int) -> bool:
        engine, double = self._engine, self._double
        if engine._implicit():
            # enqueueV2/executeV2 "only work for ... full dimension networks" (NvInferRuntime.h 8.5.2).
            double.log("ERROR", "enqueueV3: the engine was built with an implicit batch dimension; use enqueue")
            return False
        return self._run(stream_handle)

    def _run(self, stream_handle: int) -> bool:
        engine, double = self._engine, self._double
        if not engine._on_own_device("execute"):
            return False
        if self._profile < 0:
            double.log("ERROR", "enqueueV3: an optimization profile must be set for a dynamic-shape engine")
            return False
        feeds = {}
        for name, is_input, shape, dtype in engine._io:
            if name not in self._addresses:
                double.log("ERROR", f"IExecutionContext::enqueueV3: Error Code 3: address of tensor {name} is not set")
                return False
            if is_input:
                shape = self.get_tensor_shape(name)
                if -1 in shape:
                    double.log("ERROR", f"enqueueV3: input shape of {name} is not specified")
                    return False
                nbytes = int(np.prod(shape)) * np.dtype(_NP[dtype]).itemsize
                feeds[name] = read_device(self._addresses[name], nbytes, engine._device).view(_NP[dtype]).reshape(shape)
        outputs = engine._session.run(None, quantize_inputs(engine._header, feeds))
        for (name, _, _, _), value in zip([io for io in engine._io if not io[1]], outputs):
            value = np.ascontiguousarray(value)
            assert value.shape == self.get_tensor_shape(name), "double predicted the wrong output shape"
            if not check_range(self._addresses[name], value.nbytes, engine._device):
                double.log("ERROR", f"enqueueV3: output buffer of {name} is not a live allocation")
                return False
            ctypes.memmove(self._addresses[name], value.ctypes.data, value.nbytes)
        double.executions.append((engine._dla_core, stream_handle))
        return True


class EngineInspector(Guarded):
    _trt_class = "EngineInspector"

    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine

    def get_engine_information(self, fmt: Any) -> str:
        header = self._engine._header
        layers: List[Any] = []
        run: List[str] = []

        def flush() -> None:
            # A one-layer island has no range: "{ForeignNode[Conv_0]}" (NVIDIA-AI-IOT/
            # jetson_dla_tutorial README, Orin trtexec log; NVIDIA/TensorRT v10.16
            # samples/sampleCudla/README.md).
            if run:
                inner = run[0] if len(run) == 1 else f"{run[0]}...{run[-1]}"
                layers.append({"Name": f"{{ForeignNode[{inner}]}}", "LayerType": "DLA"})
                run.clear()

        for name, device, op in header["placement"]:
            if device == "dla":
                run.append(name)
                continue
            flush()
            layers.append({"Name": name, "LayerType": op})
        flush()
        if not header["detailed"]:
            layers = [layer["Name"] for layer in layers]
        return json.dumps({"Layers": layers, "Bindings": [io[0] for io in self._engine._io]})
