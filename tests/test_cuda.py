"""edged.cuda against a real GPU. Skipped, with the reason, where there is no libcudart or GPU
(CI never has one); run on a GPU host with ``pytest -m gpu tests/test_cuda.py``."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest

from edged import cuda
from edged.errors import BackendUnavailable, CudaError

pytestmark = pytest.mark.gpu

MIB = 1 << 20


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
