"""Plans for gpuN on a host with several GPUs, against the TensorRT TEST DOUBLE and a host
memory CUDA double whose current device is per thread, as CUDA's is. A fresh thread starts
on device 0, so each step runs on a thread of its own, as the daemon's builder and
pipeline threads do: a step that forgot to make its device current lands on device 0."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest

from edged.backends.base import BuildOptions
from edged.backends.tensorrt.backend import TensorRTBackend
from edged.backends.tensorrt.options import parse_options
from edged.errors import BackendError
from tests.backends.test_tensorrt_backend import ort_reference
from tests.threads import on_new_thread
from tests.trt_double import VERSIONS, HostCuda

GPUS = ("NVIDIA RTX A4000", "Tesla T4")


def two_gpu_backend(make_trt: Callable[..., Any], version: str = "10.3") -> Tuple[TensorRTBackend, Any, HostCuda]:
    trt = make_trt(version, compute=(8, 6))
    # Pinned buffers with device copies: device buffers belong to one device, mapped ones to all.
    cuda = HostCuda(compute_capability=(8, 6), integrated=False, gpus=GPUS)
    return TensorRTBackend(trt, cuda), trt._double, cuda


def calls_since(double: Any, mark: int) -> List[Tuple[str, int]]:
    return list(double.device_calls[mark:])


@pytest.mark.parametrize(
    ("device", "index"), [("gpu", 0), ("gpu0", 0), ("gpu1", 1), ("gpu12", 12), ("dla1", 0), ("auto", 0)]
)
def test_options_carry_the_gpu_index(device: str, index: int) -> None:
    assert parse_options(BuildOptions(device=device, precision="fp16")).gpu_index == index


@pytest.mark.parametrize("version", VERSIONS)
def test_gpu1_plan_builds_loads_and_runs_on_device_1(
    make_trt: Any, demo_model: str, version: str, tmp_path: Path
) -> None:
    backend, double, cuda = two_gpu_backend(make_trt, version)
    options = BuildOptions(device="gpu1", batch=2, extra={"state_dir": str(tmp_path)})

    built = on_new_thread(lambda: backend.build_plan(demo_model, options))
    # The build deserialises its own plan to read back the layer placement.
    assert calls_since(double, 0) == [("build", 1), ("deserialize", 1)]
    timing = os.listdir(tmp_path / "tensorrt" / "timing")
    assert len(timing) == 1 and "Tesla-T4-sm86" in timing[0], timing
    assert backend.device_tag(1) == "Tesla-T4-sm86" and backend.device_tag(0) == "NVIDIA-RTX-A4000-sm86"

    mark, created = len(double.device_calls), len(cuda.created)
    runner = on_new_thread(lambda: backend.load_plan(built.plan, options))
    assert calls_since(double, mark) == [("deserialize", 1), ("context", 1), ("context", 1)]
    made = cuda.created[created:]
    assert {what for what, _ in made} == {"malloc", "host_alloc", "stream", "event"}
    assert {device for _, device in made} == {1}

    # Inference from another thread than the loading one, as the pipeline's runner thread does.
    mark = len(double.device_calls)
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    got = on_new_thread(lambda: runner.infer({"images": x}))
    assert got["logits"].tobytes() == ort_reference(demo_model, x)["logits"].tobytes()
    slot = on_new_thread(lambda: runner.submit({"images": x}))
    assert on_new_thread(lambda: runner.collect(slot))["logits"].tobytes() == got["logits"].tobytes()
    assert calls_since(double, mark) == [("execute", 1), ("execute", 1)]
    on_new_thread(runner.close)


@pytest.mark.parametrize("device", ["gpu", "gpu0"])
def test_gpu0_plans_stay_on_device_0_next_to_a_gpu1_plan(make_trt: Any, demo_model: str, device: str) -> None:
    backend, double, cuda = two_gpu_backend(make_trt)
    ours, other = BuildOptions(device=device, batch=2), BuildOptions(device="gpu1", batch=2)
    x = np.full((2, 3, 64, 64), 0.25, np.float32)

    def serve_both() -> Dict[str, Any]:
        # One worker thread serves both plans in turn: each call must switch devices.
        first = backend.load_plan(backend.build_plan(demo_model, other).plan, other)
        mark = len(double.device_calls), len(cuda.created)
        runner = backend.load_plan(backend.build_plan(demo_model, ours).plan, ours)
        outputs = {"ours": runner.infer({"images": x}), "other": first.infer({"images": x})}
        runner.close()
        first.close()
        return {"mark": mark, **outputs}

    result = on_new_thread(serve_both)
    calls, created = result["mark"]
    assert calls_since(double, calls)[:-1] == [
        ("build", 0),
        ("deserialize", 0),
        ("deserialize", 0),
        ("context", 0),
        ("context", 0),
        ("execute", 0),
    ]
    assert calls_since(double, calls)[-1] == ("execute", 1)
    ours_made = cuda.created[created:]
    assert ours_made and {device for _, device in ours_made} == {0}
    assert result["ours"]["logits"].tobytes() == result["other"]["logits"].tobytes()


def test_a_gpu_the_host_lacks_is_named_with_the_count(make_trt: Any, demo_model: str) -> None:
    backend, double, _ = two_gpu_backend(make_trt)
    options = BuildOptions(device="gpu5")
    with pytest.raises(BackendError, match=r"device gpu5: this host has 2 CUDA device\(s\)"):
        backend.build_plan(demo_model, options)
    plan = backend.build_plan(demo_model, BuildOptions(device="gpu1")).plan
    with pytest.raises(BackendError, match=r"device gpu5: this host has 2 CUDA device\(s\)"):
        backend.load_plan(plan, options)
    assert ("build", 5) not in double.device_calls


def test_an_engine_used_from_a_thread_left_on_another_device_fails(make_trt: Any, demo_model: str) -> None:
    """The double's guard the tests above rely on: it does refuse the wrong device."""
    backend, double, cuda = two_gpu_backend(make_trt)
    options = BuildOptions(device="gpu1", batch=2)
    runner = backend.load_plan(backend.build_plan(demo_model, options).plan, options)
    cuda.use()  # this thread back on device 0, bypassing the runner
    engine = runner.engine
    assert engine.create_execution_context() is None
    assert double.device_calls[-1] == ("context", 0)
    runner.close()
