"""TEST DOUBLE of NVIDIA TensorRT's Python API. This is not TensorRT and not hardware.

``make_tensorrt("10.3", dla_cores=2)`` returns a module object that stands in for
``import tensorrt`` of that generation (8.5, 8.6, 10.3, 10.16 or 11.1). Every behaviour it
enforces is listed with NVIDIA's source and its test in docs/tensorrt-contracts.md. Its classes and enums are
generated from NVIDIA's per-version API tables (api/*.json), so a name a generation lacks
raises AttributeError. It enforces the documented invariants edged relies on (DLA needs
FP16/INT8 before 11; a layer the DLA cannot run fails the build without GPU fallback; the
DLA takes static shapes only; a plan from another TensorRT version or GPU deserialises to
None after logging NVIDIA's message; runtime.DLA_core picks the core at deserialisation; an
engine belongs to the CUDA device current when it was deserialised, and creating a context
or executing on another device fails)
and executes plans with ONNX Runtime, so outputs are numerically real; FP16 and INT8 plans
compute in half precision and see calibrated, quantised inputs (precision.py documents
how). It does not model layer fusion, quantised inner activations or timing.
"""

from __future__ import annotations

import types
import weakref
from typing import Any, Dict, List, Tuple

from tests.trt_double import build, builder, layers, parsers, runtime
from tests.trt_double.memory import HostCuda
from tests.trt_double.surface import VERSIONS, EnumType, Guarded, bind, load_table

__all__ = ["HostCuda", "TensorRTDouble", "make_tensorrt", "VERSIONS"]

_FULL_VERSIONS = {"8.5": "8.5.2", "8.6": "8.6.1", "10.3": "10.3.0", "10.16": "10.16.0", "11.1": "11.1.0"}
_IMPLEMENTED = [
    build.ITensor, build.ILayer, layers.INetworkDefinition, build.ParserError, build.OnnxParser,
    layers.IConvolutionLayer, layers.IActivationLayer, layers.IFullyConnectedLayer,
    parsers.CaffeParser, parsers.UffParser, parsers.IBlobNameToTensor,
    build.IOptimizationProfile, build.ITimingCache, build.IBuilderConfig, builder.IHostMemory, builder.Builder,
    runtime.Runtime, runtime.ICudaEngine, runtime.IExecutionContext, runtime.EngineInspector,
]  # fmt: skip
_SEVERITY_NAMES = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")


class TensorRTDouble:
    """State shared by one double module: its version, device, logs and records of use."""

    def __init__(self, version: str, dla_cores: int, compute: Tuple[int, int]) -> None:
        self.version = version
        self.version_string = _FULL_VERSIONS[version]
        self.major = int(version.split(".")[0])
        # ``dla_cores`` is the hardware's; TensorRT 11.0-11.3 drive none of them ("DLA was
        # unavailable in TensorRT 11.0 through 11.3", docs.nvidia.com/deeplearning/tensorrt/
        # 11.4.1/inference-library/work-with-dla.html), so their Builder reports 0.
        self.hardware_dla_cores = dla_cores
        self.dla_cores = 0 if self.major == 11 and int(version.split(".")[1]) < 4 else dla_cores
        self.compute = compute
        self.loggers: List[Any] = []
        self.executions: List[Tuple[Any, int]] = []  # (DLA core or None, stream) per execute_async_v3
        self.contexts: Any = weakref.WeakSet()  # live execution contexts
        # (build | deserialize | context | execute, the calling thread's current CUDA device)
        self.device_calls: List[Tuple[str, int]] = []
        self.parsers: List[Any] = []  # CaffeParser/UffParser instances, for tests to inspect
        self.calibration_batches: List[int] = []  # batches read per INT8 build (0: cache reused)
        self.classes: Dict[str, type] = {}
        self.module: Any = None

    def bind(self, name: str) -> Any:
        return self.classes[name]

    def log(self, severity: str, message: str) -> None:
        member = getattr(self.module.ILogger.Severity, severity)
        for logger in list(dict.fromkeys(self.loggers)):
            logger.log(member, message)


class Trampoline(type):
    """Metaclass of the interfaces users subclass (ILogger, IInt8EntropyCalibrator2,
    IProgressMonitor). pybind11 refuses an instance whose ``__init__`` did not run the bound
    base ``__init__``: "TypeError: tensorrt.ILogger.__init__() must be called when overriding
    __init__" (pybind11 detail/class.h, pybind11_meta_call); TensorRT would otherwise hold an
    object with no C++ side."""

    def __new__(mcs, name: str, bases: Tuple[type, ...], namespace: Dict[str, Any]) -> "Trampoline":
        if not bases:

            def base_init(self: Any) -> None:
                object.__setattr__(self, "_trampoline_initialised", True)

            namespace = {**namespace, "__init__": base_init, "_trampoline_name": name}
        return super().__new__(mcs, name, bases, namespace)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = super().__call__(*args, **kwargs)
        if not getattr(instance, "_trampoline_initialised", False):
            raise TypeError(f"tensorrt.{cls._trampoline_name}.__init__() must be called when overriding __init__")  # type: ignore[attr-defined]
        return instance


def make_tensorrt(version: str, dla_cores: int = 0, compute: Tuple[int, int] = (8, 7)) -> Any:
    """A fresh ``tensorrt`` stand-in of ``version``; ``module._double`` holds its records."""
    table = load_table(version)
    double = TensorRTDouble(version, dla_cores, compute)
    module = types.ModuleType("tensorrt", f"TensorRT {version} TEST DOUBLE")
    module.__version__ = double.version_string  # type: ignore[attr-defined]
    module._double = double  # type: ignore[attr-defined]
    double.module = module
    for name, members in table["enums"].items():
        if "." not in name:
            setattr(module, name, EnumType(name, members))
    for cls in _IMPLEMENTED:
        if cls._trt_class in table["classes"]:  # type: ignore[attr-defined]
            bound = bind(cls, version, table)
            bound._double, bound._trt = double, module  # type: ignore[attr-defined]
            double.classes[cls._trt_class] = bound  # type: ignore[attr-defined]
            setattr(module, cls._trt_class, bound)  # type: ignore[attr-defined]

    severity = EnumType("Severity", table["enums"]["ILogger.Severity"])

    class ILogger(metaclass=Trampoline):  # subclassed by users, like the real trampoline class
        Severity = severity

    for member in _SEVERITY_NAMES:
        setattr(ILogger, member, getattr(severity, member))
    module.ILogger = ILogger  # type: ignore[attr-defined]
    for iface in ("IInt8EntropyCalibrator2", "IProgressMonitor"):
        if iface in table["classes"]:
            setattr(module, iface, Trampoline(iface, (), {}))
    return module


assert Guarded  # re-exported for tests that check the surface guard
