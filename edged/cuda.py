"""A small ctypes binding over the CUDA runtime (libcudart), enough for TensorRT I/O.

Why not cuda-python or pycuda: both must match the JetPack's CUDA minor version and neither
is an apt package, so one Architecture: all .deb could not work across JetPack 5, 6 and 7.
The runtime API calls used here keep their ABI across CUDA 11, 12 and 13.

Device properties come from ``cudaDeviceGetAttribute`` rather than the ``cudaDeviceProp``
struct, whose layout changes between CUDA releases; only the name (the struct's first
field, 256 bytes in every release) is read from the struct.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from edged.errors import BackendUnavailable, CudaError

__all__ = [
    "CudaRuntime",
    "DeviceBuffer",
    "DeviceProperties",
    "Event",
    "HostBuffer",
    "Stream",
    "load_runtime",
]

LIBRARY_NAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so")
# Where JetPack and the CUDA toolkit put libcudart when it is not on the loader's path.
LIBRARY_DIRS = (
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/aarch64-linux/lib",
    "/usr/local/cuda/targets/x86_64-linux/lib",
)

# cudaMemcpyKind
H2D, D2H, D2D = 1, 2, 3
# cudaHostAlloc flags
_HOST_ALLOC_PORTABLE, _HOST_ALLOC_MAPPED = 1, 2
_STREAM_NON_BLOCKING = 1
# cudaDeviceAttr values (stable since CUDA 5)
_ATTR_SM_COUNT, _ATTR_INTEGRATED, _ATTR_CAN_MAP_HOST = 16, 18, 19
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76

_P = ctypes.c_void_p
_SIZE = ctypes.c_size_t
_INT = ctypes.c_int
_PP = ctypes.POINTER(ctypes.c_void_p)

# name -> argument types; every function returns cudaError_t (int).
_SIGNATURES = {
    "cudaGetDeviceCount": [ctypes.POINTER(_INT)],
    "cudaSetDevice": [_INT],
    "cudaGetDevice": [ctypes.POINTER(_INT)],
    "cudaDeviceGetAttribute": [ctypes.POINTER(_INT), _INT, _INT],
    "cudaRuntimeGetVersion": [ctypes.POINTER(_INT)],
    "cudaDriverGetVersion": [ctypes.POINTER(_INT)],
    "cudaMemGetInfo": [ctypes.POINTER(_SIZE), ctypes.POINTER(_SIZE)],
    "cudaMalloc": [_PP, _SIZE],
    "cudaFree": [_P],
    "cudaHostAlloc": [_PP, _SIZE, ctypes.c_uint],
    "cudaFreeHost": [_P],
    "cudaHostGetDevicePointer": [_PP, _P, ctypes.c_uint],
    "cudaMemcpy": [_P, _P, _SIZE, _INT],
    "cudaMemcpyAsync": [_P, _P, _SIZE, _INT, _P],
    "cudaMemsetAsync": [_P, _INT, _SIZE, _P],
    "cudaStreamCreateWithFlags": [_PP, ctypes.c_uint],
    "cudaStreamSynchronize": [_P],
    "cudaStreamDestroy": [_P],
    "cudaEventCreate": [_PP],
    "cudaEventRecord": [_P, _P],
    "cudaEventSynchronize": [_P],
    "cudaEventElapsedTime": [ctypes.POINTER(ctypes.c_float), _P, _P],
    "cudaEventDestroy": [_P],
    "cudaDeviceSynchronize": [],
    "cudaPointerGetAttributes": [_P, _P],
}


@dataclass(frozen=True)
class DeviceProperties:
    index: int
    name: str
    compute_capability: Tuple[int, int]
    sm_count: int
    integrated: bool  # Jetson: GPU shares DRAM with the CPU, so mapped host memory is zero-copy
    can_map_host_memory: bool
    total_memory_bytes: int


def _open_library(names: Sequence[str]) -> ctypes.CDLL:
    tried = []
    env = os.environ.get("EDGED_CUDART")
    candidates = ([env] if env else []) + list(names)
    candidates += [os.path.join(d, n) for d in LIBRARY_DIRS for n in names]
    for candidate in candidates:
        try:
            return ctypes.CDLL(candidate)
        except OSError as exc:
            tried.append(f"{candidate} ({exc})")
    raise BackendUnavailable(
        "the CUDA runtime library was not found (tried " + ", ".join(names) + " and " + ", ".join(LIBRARY_DIRS) + "); "
        "install the CUDA runtime (JetPack's cuda-cudart package) or set EDGED_CUDART to its path"
    )


class CudaRuntime:
    """One loaded libcudart; methods raise CudaError carrying CUDA's own name and message."""

    def __init__(self, lib: ctypes.CDLL, device: int = 0, names: Sequence[str] = LIBRARY_NAMES) -> None:
        self._lib = lib
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = _INT
        for name in ("cudaGetErrorName", "cudaGetErrorString"):
            fn = getattr(lib, name)
            fn.argtypes = [_INT]
            fn.restype = ctypes.c_char_p
        self._props_fn: Any = getattr(lib, "cudaGetDeviceProperties_v2", None) or lib.cudaGetDeviceProperties
        self._props_fn.argtypes = [ctypes.c_void_p, _INT]
        self._props_fn.restype = _INT
        self.device = device
        self.names = tuple(names)  # the library names ``lib`` was found by; for_device reuses them
        # Fails here, with cudaErrorInvalidDevice, for a device this host does not have.
        self.use()

    # -- errors ------------------------------------------------------------------------

    def check(self, name: str, *args: Any) -> None:
        code = getattr(self._lib, name)(*args)
        if code != 0:
            raise CudaError(name, code, self.error_name(code), self.error_string(code))

    def error_name(self, code: int) -> str:
        raw = self._lib.cudaGetErrorName(code)
        return raw.decode() if raw else f"cudaError {code}"

    def error_string(self, code: int) -> str:
        raw = self._lib.cudaGetErrorString(code)
        return raw.decode() if raw else "unknown error"

    # -- device ------------------------------------------------------------------------

    def use(self) -> None:
        """Make this runtime's device the calling thread's current device.

        CUDA's current device is per thread: allocations, streams, events and TensorRT's
        engines and contexts land on whatever device the calling thread has current, so every
        thread that works for a plan on this device calls this first. A thread-local record
        skips the driver call on the hot path; it assumes nothing else in the process calls
        cudaSetDevice behind edged's back on its threads.
        """
        if getattr(_CURRENT, "device", None) != self.device:
            self.check("cudaSetDevice", self.device)
            _CURRENT.device = self.device

    def for_device(self, device: int) -> CudaRuntime:
        """The process's runtime for another device of this host, from the same library."""
        if device == self.device:
            return self
        return load_runtime(device, self.names)

    def pointer_device(self, address: int) -> int:
        """The device a device or mapped pointer belongs to (cudaPointerGetAttributes)."""
        attrs = _PointerAttributes()
        self.check("cudaPointerGetAttributes", ctypes.byref(attrs), address)
        return int(attrs.device)

    def _int_out(self, name: str, *args: Any) -> int:
        value = _INT()
        self.check(name, ctypes.byref(value), *args)
        return value.value

    def device_count(self) -> int:
        return self._int_out("cudaGetDeviceCount")

    def runtime_version(self) -> int:
        return self._int_out("cudaRuntimeGetVersion")

    def driver_version(self) -> int:
        return self._int_out("cudaDriverGetVersion")

    def attribute(self, attr: int) -> int:
        return self._int_out("cudaDeviceGetAttribute", attr, self.device)

    def properties(self) -> DeviceProperties:
        raw = ctypes.create_string_buffer(8192)  # larger than cudaDeviceProp in any release
        code = self._props_fn(raw, self.device)
        if code != 0:
            raise CudaError("cudaGetDeviceProperties", code, self.error_name(code), self.error_string(code))
        _free, total = self.mem_info()
        return DeviceProperties(
            index=self.device,
            name=raw.raw[:256].split(b"\0", 1)[0].decode(errors="replace"),
            compute_capability=(self.attribute(_ATTR_CC_MAJOR), self.attribute(_ATTR_CC_MINOR)),
            sm_count=self.attribute(_ATTR_SM_COUNT),
            integrated=bool(self.attribute(_ATTR_INTEGRATED)),
            can_map_host_memory=bool(self.attribute(_ATTR_CAN_MAP_HOST)),
            total_memory_bytes=total,
        )

    def mem_info(self) -> Tuple[int, int]:
        self.use()  # cudaMemGetInfo reports on the current device
        free, total = _SIZE(), _SIZE()
        self.check("cudaMemGetInfo", ctypes.byref(free), ctypes.byref(total))
        return free.value, total.value

    def synchronize(self) -> None:
        self.use()
        self.check("cudaDeviceSynchronize")

    # -- memory ------------------------------------------------------------------------

    def malloc(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(self, nbytes)

    def host_alloc(self, nbytes: int, mapped: bool = False) -> HostBuffer:
        return HostBuffer(self, nbytes, mapped)

    def copy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        """Synchronous cudaMemcpy (the baseline the benchmarks compare against)."""
        self.check("cudaMemcpy", dst, src, nbytes, kind)

    def copy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: Stream) -> None:
        self.check("cudaMemcpyAsync", dst, src, nbytes, kind, stream.handle)

    def memset_async(self, dst: int, value: int, nbytes: int, stream: Stream) -> None:
        self.check("cudaMemsetAsync", dst, value, nbytes, stream.handle)

    def stream(self) -> Stream:
        return Stream(self)

    def event(self) -> Event:
        return Event(self)


class _Resource:
    """Owns one CUDA handle; freed once, by ``free()`` or the context manager."""

    _free_fn = ""

    def __init__(self, rt: CudaRuntime) -> None:
        self._rt = rt
        self._ptr = ctypes.c_void_p()
        self._lock = threading.Lock()
        # Every handle is created on the device current in the creating thread: make it rt's.
        rt.use()

    @property
    def handle(self) -> int:
        if self._ptr.value is None:
            raise CudaError(type(self).__name__, 0, "released", "used after free()")
        return int(self._ptr.value)

    def free(self) -> None:
        with self._lock:
            if self._ptr.value is not None:
                ptr, self._ptr = self._ptr, ctypes.c_void_p()
                self._rt.use()
                self._rt.check(self._free_fn, ptr)

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()


class DeviceBuffer(_Resource):
    _free_fn = "cudaFree"

    def __init__(self, rt: CudaRuntime, nbytes: int) -> None:
        super().__init__(rt)
        self.nbytes = nbytes
        rt.check("cudaMalloc", ctypes.byref(self._ptr), max(nbytes, 1))

    @property
    def device_ptr(self) -> int:
        return self.handle


class HostBuffer(_Resource):
    """Page-locked host memory. ``mapped`` memory is also addressable by the GPU
    (``device_ptr``): on integrated GPUs that is the same DRAM, so kernels read it with no
    copy at all; on discrete GPUs each access crosses PCIe."""

    _free_fn = "cudaFreeHost"

    def __init__(self, rt: CudaRuntime, nbytes: int, mapped: bool = False) -> None:
        super().__init__(rt)
        self.nbytes = nbytes
        self.mapped = mapped
        flags = _HOST_ALLOC_PORTABLE | (_HOST_ALLOC_MAPPED if mapped else 0)
        rt.check("cudaHostAlloc", ctypes.byref(self._ptr), max(nbytes, 1), flags)
        self._device_ptr: Optional[int] = None
        if mapped:
            dptr = ctypes.c_void_p()
            try:
                rt.check("cudaHostGetDevicePointer", ctypes.byref(dptr), self._ptr, 0)
            except CudaError:
                self.free()
                raise
            self._device_ptr = int(dptr.value or 0)

    @property
    def host_ptr(self) -> int:
        return self.handle

    @property
    def device_ptr(self) -> int:
        if self._device_ptr is None:
            raise CudaError("cudaHostGetDevicePointer", 0, "not mapped", "host buffer was allocated without mapping")
        self.handle  # noqa: B018 - raises once freed
        return self._device_ptr

    def array(self, dtype: Any, shape: Tuple[int, ...]) -> np.ndarray:
        """A numpy view of the buffer (no copy); valid until ``free()``."""
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dt.itemsize > self.nbytes:
            raise ValueError(f"view of {count * dt.itemsize} bytes exceeds the buffer's {self.nbytes}")
        raw = (ctypes.c_uint8 * (count * dt.itemsize)).from_address(self.handle)
        view: np.ndarray = np.frombuffer(raw, dtype=dt, count=count).reshape(shape)
        return view


class Stream(_Resource):
    _free_fn = "cudaStreamDestroy"

    def __init__(self, rt: CudaRuntime) -> None:
        super().__init__(rt)
        # Non-blocking: no implicit sync with the legacy default stream TensorRT may use.
        rt.check("cudaStreamCreateWithFlags", ctypes.byref(self._ptr), _STREAM_NON_BLOCKING)

    def synchronize(self) -> None:
        self._rt.check("cudaStreamSynchronize", self.handle)


class Event(_Resource):
    _free_fn = "cudaEventDestroy"

    def __init__(self, rt: CudaRuntime) -> None:
        super().__init__(rt)
        rt.check("cudaEventCreate", ctypes.byref(self._ptr))

    def record(self, stream: Stream) -> None:
        self._rt.check("cudaEventRecord", self.handle, stream.handle)

    def synchronize(self) -> None:
        self._rt.check("cudaEventSynchronize", self.handle)

    def elapsed_ms(self, start: Event) -> float:
        """Milliseconds from ``start`` to this event, both recorded and completed."""
        ms = ctypes.c_float()
        self._rt.check("cudaEventElapsedTime", ctypes.byref(ms), start.handle, self.handle)
        return float(ms.value)


class _PointerAttributes(ctypes.Structure):
    # cudaPointerAttributes as of CUDA 11 (10 still had memoryType first). Newer headers
    # append ``long reserved[8]``; keeping it here means no release writes past the struct.
    _fields_ = (
        ("type", _INT),
        ("device", _INT),
        ("devicePointer", _P),
        ("hostPointer", _P),
        ("reserved", ctypes.c_long * 8),
    )


# The device each thread last made current through CudaRuntime.use(); CUDA keeps the real
# one per thread too, and a fresh thread starts on device 0.
_CURRENT = threading.local()

_RUNTIMES: Dict[Tuple[int, Tuple[str, ...]], CudaRuntime] = {}
_RUNTIMES_LOCK = threading.Lock()


def load_runtime(device: int = 0, names: Sequence[str] = LIBRARY_NAMES) -> CudaRuntime:
    """The process's CudaRuntime for ``device``; BackendUnavailable when there is no
    libcudart, CudaError (e.g. cudaErrorNoDevice) when there is no usable GPU.

    CUDA's current device is per thread: creating the runtime makes ``device`` current
    in the creating thread only, and any other thread must call ``use()`` before it
    allocates or runs anything on ``device`` (a fresh thread starts on device 0). Jetsons
    have one GPU; dGPU hosts place plans on gpu0..gpuN, one runtime each.
    """
    with _RUNTIMES_LOCK:
        key = (device, tuple(names))
        if key not in _RUNTIMES:
            _RUNTIMES[key] = CudaRuntime(_open_library(names), device, names)
        runtime: CudaRuntime = _RUNTIMES[key]
        return runtime
