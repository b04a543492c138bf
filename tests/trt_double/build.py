"""Build side of the TensorRT test double: Builder, network, ONNX parser, builder config.

Modelling choices (documented, deliberately small): one layer per ONNX node (no fusion);
DLA capability decided per node by the double's own table (dla.py); precision flags change
the plan's record, not the arithmetic (execution always runs the ONNX model in ONNX Runtime).
"""

from __future__ import annotations

import ctypes
import json
from typing import Any, Dict, List, Optional

import numpy as np

from tests.trt_double.dla import dla_capable, shape_only
from tests.trt_double.surface import Guarded

SUPPORTED_OPS = {
    "Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm", "MatMul", "Add", "Mul", "Sub", "Div", "Sigmoid", "Tanh",
    "MaxPool", "AveragePool", "Concat", "Reshape", "Softmax", "Clip", "LeakyRelu", "BatchNormalization", "Cast",
    "QuantizeLinear", "DequantizeLinear", "Identity", "Transpose", "Shape", "Gather", "Unsqueeze", "Constant",
}  # fmt: skip
_ONNX_DTYPES = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 2: "UINT8", 9: "BOOL"}


class ITensor(Guarded):
    _trt_class = "ITensor"

    def __init__(self, name: str, shape: tuple, dtype: Any) -> None:  # type: ignore[type-arg]
        self._name, self._shape, self._dtype = name, shape, dtype

    name = property(lambda self: self._name, lambda self, value: object.__setattr__(self, "_name", str(value)))
    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype)


class ILayer(Guarded):
    _trt_class = "ILayer"

    def __init__(self, name: str, op_type: str, reduced: bool, dla: bool = False) -> None:
        self._name, self._op, self._reduced, self._dla = name, op_type, reduced, dla
        self._host = False  # a shape calculation TensorRT does at build/enqueue time, never placed

    name = property(lambda self: self._name)
    type = property(lambda self: self._op)


class INetworkDefinition(Guarded):
    _trt_class = "INetworkDefinition"

    def __init__(self, trt: Any, flags: int) -> None:
        self._trt, self._flags = trt, flags
        self._model: Any = None
        self._layers: List[ILayer] = []
        self._inputs: List[ITensor] = []

    def _load(self, model: Any) -> None:
        self._model = model
        # Strongly typed (11.x) networks are reduced-precision only when the model is.
        typed = any(i.data_type == 10 for i in model.graph.initializer) or any(
            n.op_type == "QuantizeLinear" for n in model.graph.node
        )
        dla, host = dla_capable(model, self._double.major), shape_only(model)
        self._layers = []
        for i, node in enumerate(model.graph.node):
            name = node.name or f"{node.op_type}_{i}"
            layer = self._double.bind("ILayer")(name, node.op_type, typed, dla[name])
            layer._host = name in host
            self._layers.append(layer)
        inits = {i.name for i in model.graph.initializer}
        for value in model.graph.input:
            if value.name in inits:
                continue
            t = value.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            dtype = getattr(self._trt.DataType, _ONNX_DTYPES.get(t.elem_type, "FLOAT"))
            self._inputs.append(self._double.bind("ITensor")(value.name, shape, dtype))

    num_layers = property(lambda self: len(self._layers))
    num_inputs = property(lambda self: len(self._inputs))

    def get_layer(self, i: int) -> ILayer:
        return self._layers[i]

    def get_input(self, i: int) -> ITensor:
        return self._inputs[i]


class ParserError(Guarded):
    _trt_class = "ParserError"

    def __init__(self, desc: str, node: int, node_name: str) -> None:
        self._desc, self._node, self._node_name = desc, node, node_name

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._node_name

    def code(self) -> int:
        return 8  # UNSUPPORTED_NODE


class OnnxParser(Guarded):
    _trt_class = "OnnxParser"

    def __init__(self, network: INetworkDefinition, logger: Any) -> None:
        self._network, self._logger, self._errors = network, logger, []  # type: ignore[var-annotated]
        self._config: Any = None
        self._subgraphs: List[Any] = []  # (supported, node indices) from supports_model_v2

    def set_builder_config(self, builder_config: Any) -> bool:
        self._config = builder_config
        return True

    def _dla_report(self) -> bool:
        flag = getattr(getattr(self._trt, "OnnxParserFlag", None), "REPORT_CAPABILITY_DLA", None)
        return flag is not None and self.get_flag(flag)

    def _needs_config(self) -> bool:
        """REPORT_CAPABILITY_DLA: "When this flag is set, a valid IBuilderConfig must be provided
        to the parser via setBuilderConfig()" (NvOnnxParser.h v10.16 / v11.1)."""
        if self._dla_report() and self._config is None:
            desc = "REPORT_CAPABILITY_DLA is set but no IBuilderConfig was given with set_builder_config()"
            self._errors.append(self._double.bind("ParserError")(desc, -1, ""))
            return True
        return False

    def _dla_ok(self, proto: Any) -> Dict[str, bool]:
        config, trt = self._config, self._trt
        reduced = trt._double.major >= 11 or any(
            config.get_flag(getattr(trt.BuilderFlag, f)) for f in ("FP16", "INT8") if hasattr(trt.BuilderFlag, f)
        )
        return {name: ok and reduced for name, ok in dla_capable(proto, trt._double.major).items()}

    def supports_model_v2(self, model: bytes, path: Optional[str] = None) -> bool:
        """Partitions the nodes into runs the parser (and with REPORT_CAPABILITY_DLA, the DLA)
        supports or not: "is_subgraph_supported() will also return capability in the context
        of DLA support" (NvOnnxParser.h v10.16)."""
        import onnx

        self._subgraphs = []
        if self._needs_config():
            return False
        proto = onnx.load_from_string(bytes(model))
        dla = self._dla_ok(proto) if self._dla_report() else None
        host = shape_only(proto)
        for index, node in enumerate(proto.graph.node):
            name = node.name or f"{node.op_type}_{index}"
            ok = node.op_type in SUPPORTED_OPS and (dla is None or name in host or dla[name])
            if self._subgraphs and self._subgraphs[-1][0] == ok:
                self._subgraphs[-1][1].append(index)
            else:
                self._subgraphs.append((ok, [index]))
        return all(ok for ok, _ in self._subgraphs)

    num_subgraphs = property(lambda self: len(self._subgraphs))

    def is_subgraph_supported(self, index: int) -> bool:
        return bool(self._subgraphs[index][0])

    def get_subgraph_nodes(self, index: int) -> List[int]:
        return list(self._subgraphs[index][1])

    def parse_from_file(self, path: str) -> bool:
        with open(path, "rb") as handle:
            return self.parse(handle.read())

    def parse(self, model: bytes, path: Optional[str] = None) -> bool:
        import onnx

        net, trt = self._network, self._network._trt
        explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
        if trt._double.major < 10 and not net._flags & (1 << int(explicit)):
            self._errors.append(
                self._double.bind("ParserError")("Network must have explicit batch dimension (implicit batch)", -1, "")
            )
            return False
        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as exc:
            self._errors.append(self._double.bind("ParserError")(f"Failed to parse ONNX model: {exc}", -1, ""))
            return False
        if self._needs_config():
            return False
        dla = self._dla_ok(proto) if self._dla_report() else {}
        host = shape_only(proto)
        for i, node in enumerate(proto.graph.node):
            if node.op_type not in SUPPORTED_OPS:
                desc = f"No importer registered for op: {node.op_type}"
                self._errors.append(self._double.bind("ParserError")(desc, i, node.name))
            elif dla and not dla[node.name or f"{node.op_type}_{i}"] and (node.name or "") not in host:
                # "If the model is not fully supported by DLA, then parsing will fail" (NvOnnxParser.h v10.16).
                desc = f"node {node.name} ({node.op_type}) is not supported on DLA (REPORT_CAPABILITY_DLA)"
                self._errors.append(self._double.bind("ParserError")(desc, i, node.name))
        if self._errors:
            return False
        net._load(proto)
        return True

    num_errors = property(lambda self: len(self._errors))

    def set_flag(self, flag: Any) -> None:
        self._flags = getattr(self, "_flags", set()) | {flag}

    def get_flag(self, flag: Any) -> bool:
        return flag in getattr(self, "_flags", set())

    def get_error(self, i: int) -> ParserError:
        return self._errors[i]  # type: ignore[no-any-return]


class IOptimizationProfile(Guarded):
    _trt_class = "IOptimizationProfile"

    def __init__(self) -> None:
        self._shapes: Dict[str, List[tuple]] = {}  # type: ignore[type-arg]

    def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:  # type: ignore[type-arg]
        self._shapes[name] = [tuple(lo), tuple(opt), tuple(hi)]

    def get_shape(self, name: str) -> List[tuple]:  # type: ignore[type-arg]
        return self._shapes[name]


class ITimingCache(Guarded):
    """Serialised with a header naming the TensorRT version and the GPU it was timed on:
    "The timing cache has verification header to make sure the provided cache can be used in
    current environment" (NvInfer.h v10.3.0, IBuilderConfig::setTimingCache)."""

    _trt_class = "ITimingCache"

    def __init__(self, entries: Dict[str, float], trt: str, compute: List[int]) -> None:
        self._entries, self._trt_version, self._compute = entries, trt, list(compute)

    def serialize(self) -> bytes:
        doc = {"timing_cache": self._trt_version, "compute": self._compute, "entries": self._entries}
        return json.dumps(doc, sort_keys=True).encode()


class IBuilderConfig(Guarded):
    _trt_class = "IBuilderConfig"

    def __init__(self, trt: Any) -> None:
        self._trt = trt
        self._flags: set = set()  # type: ignore[type-arg]
        self._pools: Dict[str, int] = {}
        self._devices: Dict[str, Any] = {}
        self._profiles: List[IOptimizationProfile] = []
        self._timing: Optional[ITimingCache] = None
        self._calibrator: Any = None
        self._monitor: Any = None
        self._dla_core = -1
        self._default_device = trt.DeviceType.GPU
        self._verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY

    def set_flag(self, flag: Any) -> None:
        self._flags.add(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self._flags

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        if pool.name.startswith("DLA_") and (size < 4096 or size & (size - 1)):
            self._trt._double.log("ERROR", f"{pool.name} pool size {size} must be a power of two >= 4096")
            return
        self._pools[pool.name] = size

    def get_memory_pool_limit(self, pool: Any) -> int:
        return self._pools.get(pool.name, 0)

    default_device_type = property(
        lambda self: self._default_device, lambda self, v: object.__setattr__(self, "_default_device", v)
    )
    DLA_core = property(lambda self: self._dla_core, lambda self, v: object.__setattr__(self, "_dla_core", int(v)))
    profiling_verbosity = property(
        lambda self: self._verbosity, lambda self, v: object.__setattr__(self, "_verbosity", v)
    )
    int8_calibrator = property(
        lambda self: self._calibrator, lambda self, v: object.__setattr__(self, "_calibrator", v)
    )
    progress_monitor = property(lambda self: self._monitor, lambda self, v: object.__setattr__(self, "_monitor", v))

    def set_device_type(self, layer: ILayer, device: Any) -> None:
        self._devices[layer.name] = device

    def get_device_type(self, layer: ILayer) -> Any:
        return self._devices.get(layer.name, self._default_device)

    def can_run_on_DLA(self, layer: ILayer) -> bool:
        double = self._trt._double
        if not layer._dla:
            return False
        if double.major < 11:  # the DLA runs FP16 or INT8 only
            return self.get_flag(self._trt.BuilderFlag.FP16) or self.get_flag(self._trt.BuilderFlag.INT8)
        return layer._reduced

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        return True

    def create_timing_cache(self, data: bytes) -> Optional[ITimingCache]:
        """Size 0 makes a new cache; a blob that is no timing cache of this TensorRT logs an
        error and gives None (modelled: NvInfer.h documents only the pointer it returns)."""
        double = self._trt._double
        compute = list(double.compute)
        if not data:
            return double.bind("ITimingCache")({}, double.version_string, compute)  # type: ignore[no-any-return]
        try:
            doc = json.loads(bytes(data).decode())
            entries, version, compute = dict(doc["entries"]), str(doc["timing_cache"]), list(doc["compute"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            double.log("ERROR", "Timing cache: the serialized data is not a valid timing cache")
            return None
        if version != double.version_string:
            double.log("ERROR", f"Timing cache was created by TensorRT {version}, this is {double.version_string}")
            return None
        return double.bind("ITimingCache")(entries, version, compute)  # type: ignore[no-any-return]

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        """pybind11 passes ``cache`` by reference: None is a TypeError. A cache timed on a GPU
        with other properties is refused unless ``ignore_mismatch`` (NvInfer.h v10.3.0)."""
        double = self._trt._double
        if not isinstance(cache, ITimingCache):
            raise TypeError("set_timing_cache(): incompatible function arguments (cache must be an ITimingCache)")
        if cache._compute != list(double.compute) and not bool(ignore_mismatch):
            double.log("ERROR", "Timing cache: the CUDA device property of the cache differs from the current device")
            return False
        self._timing = cache
        return True

    def get_timing_cache(self) -> Optional[ITimingCache]:
        return self._timing


def read_device(address: int, nbytes: int, device: Optional[int] = None) -> np.ndarray:
    """Bytes at a "device" address handed to the double (host memory, see memory.py), which
    must be usable from ``device`` when one is given."""
    from tests.trt_double.memory import check_range

    if not check_range(address, nbytes, device):
        raise ValueError(f"address {address:#x}+{nbytes} is not inside a live buffer on device {device}")
    return np.frombuffer(ctypes.string_at(address, nbytes), dtype=np.uint8)
