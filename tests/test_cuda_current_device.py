"""edged.cuda's per-thread current device, over a stand-in libcudart (no GPU needed): a
runtime makes its device current in whichever thread uses it, and says so to CUDA only when
that thread is not there already. tests/test_cuda.py checks the same on real GPUs.

Every step runs on a fresh thread: edged.cuda remembers each thread's device, and the main
thread must stay free of this fake library's history for the real-GPU tests."""

from __future__ import annotations

import itertools
import threading
from typing import Any, Dict, List, Tuple

import pytest

from edged import cuda
from edged.errors import CudaError
from tests.threads import on_new_thread


class _Fn:
    def __init__(self, lib: FakeCudart, name: str) -> None:
        self._lib, self._name = lib, name
        self.argtypes: Any = None
        self.restype: Any = None

    def __call__(self, *args: Any) -> Any:
        return self._lib.call(self._name, args)


class FakeCudart:
    """Two devices; the current one is per thread (0 on a fresh thread); every call is logged
    with the device current in the calling thread."""

    def __init__(self, devices: int = 2) -> None:
        self.devices = devices
        self.calls: List[Tuple[str, int]] = []
        self.owner: Dict[int, int] = {}  # address -> device it was allocated on
        self._thread = threading.local()
        self._addresses = itertools.count(0x10000, 0x1000)

    def __getattr__(self, name: str) -> _Fn:
        if not name.startswith("cuda"):
            raise AttributeError(name)
        fn = _Fn(self, name)
        setattr(self, name, fn)
        return fn

    def call(self, name: str, args: Tuple[Any, ...]) -> Any:
        if name in ("cudaGetErrorName", "cudaGetErrorString"):
            return b"cudaErrorInvalidDevice" if name.endswith("Name") else b"invalid device ordinal"
        current = int(getattr(self._thread, "device", 0))
        self.calls.append((name, args[0] if name == "cudaSetDevice" else current))
        if name == "cudaSetDevice":
            if not 0 <= args[0] < self.devices:
                return 101
            self._thread.device = args[0]
        elif name in ("cudaMalloc", "cudaHostAlloc", "cudaStreamCreateWithFlags", "cudaEventCreate"):
            address = next(self._addresses)
            args[0]._obj.value = address
            self.owner[address] = current
        elif name == "cudaPointerGetAttributes":
            args[0]._obj.device = self.owner[args[1]]
        return 0


def runtimes(lib: FakeCudart) -> Tuple[cuda.CudaRuntime, cuda.CudaRuntime]:
    return on_new_thread(lambda: (cuda.CudaRuntime(lib, 0), cuda.CudaRuntime(lib, 1)))  # type: ignore[arg-type]


def test_use_switches_a_thread_once_and_allocations_follow_the_runtime() -> None:
    lib = FakeCudart()
    rt0, rt1 = runtimes(lib)

    def work() -> Tuple[int, int]:
        lib.calls.clear()
        rt1.use()
        rt1.use()
        a = rt1.malloc(64)
        b = rt0.malloc(64)  # the runtime's device, not the thread's last one
        return rt1.pointer_device(a.device_ptr), rt0.pointer_device(b.device_ptr)

    assert on_new_thread(work) == (1, 0)
    assert [c for c in lib.calls if c[0] in ("cudaSetDevice", "cudaMalloc")] == [
        ("cudaSetDevice", 1),  # once for the two use() calls and rt1's malloc
        ("cudaMalloc", 1),
        ("cudaSetDevice", 0),
        ("cudaMalloc", 0),
    ]


def test_every_thread_makes_the_device_current_itself() -> None:
    lib = FakeCudart()
    _rt0, rt1 = runtimes(lib)
    buf = on_new_thread(lambda: rt1.malloc(16))
    lib.calls.clear()
    on_new_thread(rt1.mem_info)
    on_new_thread(lambda: rt1.stream().free())
    on_new_thread(buf.free)  # freed on another thread than the allocating one
    assert [c for c in lib.calls if c[0] != "cudaSetDevice"] == [
        ("cudaMemGetInfo", 1),
        ("cudaStreamCreateWithFlags", 1),
        ("cudaStreamDestroy", 1),
        ("cudaFree", 1),
    ]


def test_a_device_the_host_lacks_fails_and_is_not_remembered() -> None:
    lib = FakeCudart()
    rt0, _rt1 = runtimes(lib)

    def work() -> None:
        with pytest.raises(CudaError, match="cudaErrorInvalidDevice"):
            cuda.CudaRuntime(lib, 5)  # type: ignore[arg-type]
        lib.calls.clear()
        rt0.use()

    on_new_thread(work)
    assert lib.calls == [("cudaSetDevice", 0)]
