"""A host-memory stand-in for edged.cuda (part of the TensorRT test double).

"Device" buffers are plain host allocations, copies are memmoves done at once, events read
the host clock. Every live allocation is registered, so the TensorRT double can refuse a
tensor address that is not inside a live buffer (a wrong or freed pointer in the runner).
"""

from __future__ import annotations

import ctypes
import time
import weakref
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from edged.cuda import DeviceProperties

LIVE: Dict[int, int] = {}  # address -> size of every live double allocation


def check_range(address: int, nbytes: int) -> bool:
    return any(base <= address and address + nbytes <= base + size for base, size in LIVE.items())


class _Buffer:
    def __init__(self, nbytes: int, mapped: bool = False) -> None:
        self.nbytes = nbytes
        self.mapped = mapped
        self._raw: Optional[Any] = ctypes.create_string_buffer(max(nbytes, 1))
        self._address = ctypes.addressof(self._raw)
        LIVE[self._address] = max(nbytes, 1)
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

    def synchronize(self) -> None:
        pass

    def free(self) -> None:
        pass


class _Event:
    def __init__(self) -> None:
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
    """edged.cuda.CudaRuntime's surface over host memory; ``integrated`` picks zero-copy."""

    name: str = "Orin (TensorRT double)"
    compute_capability: Tuple[int, int] = (8, 7)
    integrated: bool = True

    def properties(self) -> DeviceProperties:
        return DeviceProperties(0, self.name, self.compute_capability, 16, self.integrated, True, 8 << 30)

    def malloc(self, nbytes: int) -> _Buffer:
        return _Buffer(nbytes)

    def host_alloc(self, nbytes: int, mapped: bool = False) -> _Buffer:
        return _Buffer(nbytes, mapped)

    def copy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        assert check_range(dst, nbytes) and check_range(src, nbytes), "copy outside live buffers"
        ctypes.memmove(dst, src, nbytes)

    def copy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: Any) -> None:
        self.copy(dst, src, nbytes, kind)

    def stream(self) -> _Stream:
        return _Stream()

    def event(self) -> _Event:
        return _Event()
