"""edged.cuda against a real GPU. Skipped, with the reason, where there is no libcudart or GPU
(CI never has one); run on a GPU host with ``pytest -m gpu tests/test_cuda.py``."""

from __future__ import annotations

import ctypes
import resource
import time
from typing import Any, Dict

import numpy as np
import pytest

from edged import cuda
from edged.errors import BackendUnavailable, CudaError
from tests.threads import on_new_thread

pytestmark = pytest.mark.gpu

MIB = 1 << 20


def current_device(rt: cuda.CudaRuntime) -> int:
    """What CUDA itself says the calling thread's device is (not edged's record of it)."""
    value = ctypes.c_int()
    rt.check("cudaGetDevice", ctypes.byref(value))
    return value.value


@pytest.fixture(scope="module")
def rt() -> cuda.CudaRuntime:
    try:
        runtime = cuda.load_runtime()
        if runtime.device_count() < 1:
            pytest.skip("libcudart loaded but it sees no GPU")
    except BackendUnavailable as exc:
        pytest.skip(f"no CUDA runtime here: {exc}")
    except CudaError as exc:
        pytest.skip(f"no usable GPU here: {exc}")
    return runtime


def test_properties_are_plausible(rt: cuda.CudaRuntime) -> None:
    props = rt.properties()
    assert props.name
    assert props.compute_capability[0] >= 5
    assert props.sm_count > 0
    assert props.total_memory_bytes > 256 * MIB
    assert rt.runtime_version() >= 11000


@pytest.mark.parametrize("nbytes", [1, 4093, 8 * MIB + 3])
def test_pinned_round_trip_is_bit_exact(rt: cuda.CudaRuntime, nbytes: int) -> None:
    data = np.random.default_rng(nbytes).integers(0, 256, nbytes, dtype=np.uint8)
    with rt.host_alloc(nbytes) as src, rt.host_alloc(nbytes) as dst, rt.malloc(nbytes) as dev, rt.stream() as s:
        src.array(np.uint8, (nbytes,))[:] = data
        dst.array(np.uint8, (nbytes,))[:] = ~data  # poisoned: every byte must be written back
        rt.copy_async(dev.device_ptr, src.host_ptr, nbytes, cuda.H2D, s)
        rt.copy_async(dst.host_ptr, dev.device_ptr, nbytes, cuda.D2H, s)
        s.synchronize()
        assert np.array_equal(dst.array(np.uint8, (nbytes,)), data)


def test_mapped_buffer_is_read_and_written_by_the_gpu(rt: cuda.CudaRuntime) -> None:
    if not rt.properties().can_map_host_memory:
        pytest.skip("this GPU cannot map host memory")
    n = 3 * MIB + 1
    data = np.random.default_rng(5).standard_normal(n).astype(np.float32)
    with rt.host_alloc(4 * n, mapped=True) as src, rt.host_alloc(4 * n, mapped=True) as dst, rt.malloc(4 * n) as dev:
        with rt.stream() as s:
            src.array(np.float32, (n,))[:] = data
            dst.array(np.float32, (n,))[:] = np.nan
            # Device-to-device through the mapped pointers: only the GPU's view of them is used.
            rt.copy_async(dev.device_ptr, src.device_ptr, 4 * n, cuda.D2D, s)
            rt.copy_async(dst.device_ptr, dev.device_ptr, 4 * n, cuda.D2D, s)
            s.synchronize()
        assert dst.array(np.float32, (n,)).tobytes() == data.tobytes()


def test_events_time_a_copy(rt: cuda.CudaRuntime) -> None:
    n = 64 * MIB
    with rt.host_alloc(n) as host, rt.malloc(n) as dev, rt.stream() as s, rt.event() as a, rt.event() as b:
        host.array(np.uint8, (n,))[:] = 7
        t0 = time.perf_counter()
        a.record(s)
        rt.copy_async(dev.device_ptr, host.host_ptr, n, cuda.H2D, s)
        b.record(s)
        b.synchronize()
        wall_ms = (time.perf_counter() - t0) * 1000.0
        ms = b.elapsed_ms(a)
    gbps = n / (ms / 1000.0) / 1e9
    assert 0.0 < ms <= wall_ms + 0.5
    assert 0.5 < gbps < 500.0, f"{gbps:.1f} GB/s is not a plausible host-to-device rate"


def test_ten_thousand_alloc_free_cycles_leak_nothing(rt: cuda.CudaRuntime) -> None:
    def cycle() -> None:
        dev = rt.malloc(MIB)
        host = rt.host_alloc(64 * 1024)
        stream, event = rt.stream(), rt.event()
        for res in (event, stream, host, dev):
            res.free()

    for _ in range(100):  # let the allocator and the context settle first
        cycle()
    free_before, _ = rt.mem_info()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(10_000):
        cycle()
    free_after, _ = rt.mem_info()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert free_after == free_before, f"device memory lost: {free_before - free_after} bytes"
    assert rss_after - rss_before < 16 * 1024, f"host RSS grew {rss_after - rss_before} KiB"


def test_errors_carry_cudas_message(rt: cuda.CudaRuntime) -> None:
    with pytest.raises(CudaError) as info:
        rt.malloc(1 << 60)
    assert info.value.call == "cudaMalloc"
    assert info.value.name == "cudaErrorMemoryAllocation"
    assert "out of memory" in str(info.value)
    with pytest.raises(CudaError, match="cudaErrorInvalidDevice"):
        cuda.CudaRuntime(cuda._open_library(cuda.LIBRARY_NAMES), device=rt.device_count() + 7)
    buf = rt.malloc(16)
    buf.free()
    buf.free()  # a second free is a no-op, never a double cudaFree
    with pytest.raises(CudaError, match="used after free"):
        _ = buf.device_ptr


def test_each_device_allocates_on_its_own_gpu_from_a_fresh_thread(rt: cuda.CudaRuntime) -> None:
    for index in range(rt.device_count()):
        dev_rt = cuda.load_runtime(index)

        def allocate(dev_rt: cuda.CudaRuntime = dev_rt) -> Dict[str, int]:
            seen = {"before": current_device(dev_rt)}
            dev_rt.use()
            seen["after"] = current_device(dev_rt)
            with dev_rt.malloc(MIB) as buf:
                seen["memory"] = dev_rt.pointer_device(buf.device_ptr)
            return seen

        assert on_new_thread(allocate) == {"before": 0, "after": index, "memory": index}


def test_two_devices_keep_plans_memory_apart_on_one_thread(rt: cuda.CudaRuntime) -> None:
    if rt.device_count() < 2:
        pytest.skip(f"needs 2 GPUs, this host has {rt.device_count()}")
    rt0, rt1 = cuda.load_runtime(0), cuda.load_runtime(1)
    size = 512 * MIB

    def alternate() -> Dict[str, Any]:
        # One worker serving plans on both GPUs in turn, as the daemon's threads do.
        free0, free1 = rt0.mem_info()[0], rt1.mem_info()[0]
        on1 = rt1.malloc(size)
        on0 = rt0.malloc(MIB)
        seen = {
            "devices": (rt1.pointer_device(on1.device_ptr), rt0.pointer_device(on0.device_ptr)),
            "drop1": free1 - rt1.mem_info()[0],
            "drop0": free0 - rt0.mem_info()[0],
            "current": current_device(rt0),
        }
        on1.free()
        on0.free()
        return seen

    seen = on_new_thread(alternate)
    assert seen["devices"] == (1, 0)
    assert seen["current"] == 0  # rt0.mem_info() was the last call: the thread follows each runtime
    # cudaMemGetInfo counts in the driver's allocation granularity; the big block shows on GPU 1 only.
    assert seen["drop1"] >= size, seen
    assert seen["drop0"] < size // 2, seen
