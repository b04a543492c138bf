"""A host-memory stand-in for edged.cuda (part of the TensorRT test double).

"Device" buffers are plain host allocations, copies are memmoves done at once, events read
the host clock. Every live allocation is registered, so the TensorRT double can refuse a
tensor address that is not inside a live buffer (a wrong or freed pointer in the runner).

A host may have several GPUs (``HostCuda(gpus=(...))``). As in CUDA, the current device is
per thread and a thread that never chose one is on device 0; ``use()`` switches the calling
thread, and, like edged.cuda, a runtime makes its own device current before it creates
anything. Device buffers belong to the device they were allocated on, and every creation
is recorded with that device in ``HostCuda.created``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edged.cuda import DeviceProperties
from edged.errors import CudaError

# address -> (size, device) of every live double allocation; device None: page-locked host
# memory, which cudaHostAllocPortable makes usable from every device.
LIVE: Dict[int, Tuple[int, Optional[int]]] = {}

_THREAD = threading.local()


def current_device() -> int:
    """The calling thread's current device (CUDA starts every thread on device 0)."""
    return int(getattr(_THREAD, "device", 0))


def reset_current_device() -> None:
    """Put the calling thread back on device 0, as if it were fresh."""
    _THREAD.device = 0


def check_range(address: int, nbytes: int, device: Optional[int] = None) -> bool:
    """Whether ``address``..+``nbytes`` lies in one live buffer usable from ``device``."""
    return any(
        base <= address and address + nbytes <= base + size and (device is None or owner in (None, device))
        for base, (size, owner) in LIVE.items()
    )


class _Buffer:
    def __init__(self, nbytes: int, mapped: bool = False, device: Optional[int] = None) -> None:
        self.nbytes = nbytes
        self.mapped = mapped
        self.device = device
        self._raw: Optional[Any] = ctypes.create_string_buffer(max(nbytes, 1))
        self._address = ctypes.addressof(self._raw)
        LIVE[self._address] = (max(nbytes, 1), device)
        # A buffer dropped without free() releases its memory too; forget it then, or a later
        # allocation at the same address would look live through the stale entry.
        self._forget = weakref.finalize(self, LIVE.pop, self._address, None)

    @property
    def host_ptr(self) -> int:
        if self._raw is None:
            raise RuntimeError("used after free()")
        return self._address

    device_ptr = host_ptr  # one address space: "device" memory is host memory here

    def array(self, dtype: Any, shape: Tuple[int, ...]) -> np.ndarray:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        assert count * dt.itemsize <= self.nbytes, "view larger than the buffer"
        return np.frombuffer((ctypes.c_uint8 * (count * dt.itemsize)).from_address(self.host_ptr), dtype=dt).reshape(
            shape
        )

    def free(self) -> None:
        if self._raw is not None:
            self._forget()
            self._raw = None


class _Stream:
    handle = 0x5_7EA4

    def __init__(self, device: int) -> None:
        self.device = device

    def synchronize(self) -> None:
        pass

    def free(self) -> None:
        pass


class _Event:
    def __init__(self, device: int) -> None:
        self.device = device
        self.t: Optional[float] = None

    def record(self, stream: _Stream) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        assert self.t is not None, "event synchronised before it was recorded"

    def elapsed_ms(self, start: _Event) -> float:
        assert self.t is not None and start.t is not None
        return (self.t - start.t) * 1000.0

    def free(self) -> None:
        pass


@dataclass
class HostCuda:
    """edged.cuda.CudaRuntime's surface over host memory; ``integrated`` picks zero-copy.

    One object is one device's runtime, as in edged.cuda; ``gpus`` names the host's GPUs
    when it has several (empty: one GPU named ``name``), and ``for_device`` gives the
    runtime of another, sharing ``created``.
    """

    name: str = "Orin (TensorRT double)"
    compute_capability: Tuple[int, int] = (8, 7)
    integrated: bool = True
    gpus: Tuple[str, ...] = ()
    device: int = 0
    created: List[Tuple[str, int]] = field(default_factory=list)  # (what, device) per creation
    _runtimes: Dict[int, HostCuda] = field(default_factory=dict, repr=False)

    def device_count(self) -> int:
        return max(1, len(self.gpus))

    def for_device(self, device: int) -> HostCuda:
        if not 0 <= device < self.device_count():
            raise CudaError("cudaSetDevice", 101, "cudaErrorInvalidDevice", "invalid device ordinal")
        if device == self.device:
            return self
        if device not in self._runtimes:
            self._runtimes[device] = dataclasses.replace(self, device=device)
        return self._runtimes[device]

    def use(self) -> None:
        _THREAD.device = self.device

    def _create(self, what: str) -> int:
        self.use()
        device = current_device()
        self.created.append((what, device))
        return device

    def properties(self) -> DeviceProperties:
        name = self.gpus[self.device] if self.gpus else self.name
        return DeviceProperties(self.device, name, self.compute_capability, 16, self.integrated, True, 8 << 30)

    def malloc(self, nbytes: int) -> _Buffer:
        return _Buffer(nbytes, device=self._create("malloc"))

    def host_alloc(self, nbytes: int, mapped: bool = False) -> _Buffer:
        self._create("host_alloc")
        return _Buffer(nbytes, mapped)

    def copy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        assert check_range(dst, nbytes) and check_range(src, nbytes), "copy outside live buffers"
        ctypes.memmove(dst, src, nbytes)

    def copy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: Any) -> None:
        self.copy(dst, src, nbytes, kind)

    def stream(self) -> _Stream:
        return _Stream(self._create("stream"))

    def event(self) -> _Event:
        return _Event(self._create("event"))
