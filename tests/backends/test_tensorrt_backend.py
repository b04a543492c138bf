"""TensorRT backend against the TensorRT TEST DOUBLE (tests/trt_double) of each supported
generation, with host memory standing in for the GPU. Not hardware: tools/hw-validate runs
the same checks on a Jetson or dGPU."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest

from edged.backends.base import BuildOptions
from edged.backends.onnxruntime.backend import OnnxRuntimeBackend
from edged.backends.tensorrt.backend import TensorRTBackend
from edged.errors import BackendError, BackendUnavailable, PlanError
from tests.backends.conftest import write_model
from tests.trt_double import VERSIONS, HostCuda
from tests.trt_double.builder import unpack_plan

ALL = pytest.mark.parametrize("version", VERSIONS)
# Versions whose library drives a DLA: not 11.0-11.3 (NVIDIA, Working with DLA, 11.4.1 docs).
DLA = pytest.mark.parametrize("version", [v for v in VERSIONS if not v.startswith("11.")])


def backend(make_trt: Callable[..., Any], version: str, dla: int = 2, **cuda: Any) -> Tuple[TensorRTBackend, Any]:
    trt = make_trt(version, dla_cores=dla, compute=cuda.pop("compute", (8, 7)))
    return TensorRTBackend(trt, HostCuda(compute_capability=trt._double.compute, **cuda)), trt._double


def ort_reference(model: str, x: np.ndarray) -> Dict[str, np.ndarray]:
    ort = OnnxRuntimeBackend()
    runner = ort.load_plan(ort.build_plan(model, BuildOptions()).plan, BuildOptions())
    name = runner.inputs[0].name
    return runner.infer({name: x})


def header(plan: bytes) -> Dict[str, Any]:
    unpacked = unpack_plan(plan)
    assert unpacked is not None
    return unpacked[0]  # type: ignore[no-any-return]


@ALL
@pytest.mark.parametrize("integrated", [True, False], ids=["zero-copy", "pinned+copies"])
def test_fp32_build_load_infer_is_bit_exact(make_trt: Any, demo_model: str, version: str, integrated: bool) -> None:
    trt_backend, _ = backend(make_trt, version, integrated=integrated)
    options = BuildOptions(device="gpu", batch=4)
    built = trt_backend.build_plan(demo_model, options)
    runner = trt_backend.load_plan(built.plan, options)
    assert [s.name for s in runner.inputs] == ["images"] and runner.inputs[0].shape == (None, 3, 64, 64)
    assert runner.zero_copy is integrated
    rng = np.random.default_rng(1)
    for batch in (4, 1, 3):
        x = rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)
        got = runner.infer({"images": x})["logits"]
        want = ort_reference(demo_model, x)["logits"]
        assert got.shape == (batch, 10)
        assert got.tobytes() == want.tobytes()
    timings = runner.last_timings
    assert timings.h2d_ms is not None and timings.compute_ms is not None and timings.d2h_ms is not None
    assert timings.compute_ms > 0
    assert {layer["device"] for layer in built.layer_placement or []} == {"gpu"}
    runner.close()


@ALL
def test_two_slots_double_buffer(make_trt: Any, demo_model: str, version: str) -> None:
    trt_backend, double = backend(make_trt, version)
    options = BuildOptions(device="gpu", batch=2)
    runner = trt_backend.load_plan(trt_backend.build_plan(demo_model, options).plan, options)
    xs = [np.full((2, 3, 64, 64), v, np.float32) for v in (0.1, 0.7)]
    first, second = runner.submit({"images": xs[0]}), runner.submit({"images": xs[1]})
    assert first != second
    with pytest.raises(BackendError, match=r"uncollected"):
        runner.submit({"images": xs[0]})
    outs = [runner.collect(first), runner.collect(second)]
    for x, out in zip(xs, outs):
        assert out["logits"].tobytes() == ort_reference(demo_model, x)["logits"].tobytes()
    assert len({id(c) for c in double.contexts}) == 2  # one execution context per slot


@ALL
def test_two_engines_of_one_plan_run_side_by_side(make_trt: Any, demo_model: str, version: str) -> None:
    """A model's ``instances`` (edged.model_loading.same_device_instances) deserialise one
    plan once per engine. TensorRT allows it: "the TensorRT runtime can be used by multiple
    threads simultaneously, so long as each object uses a different execution context"
    (Developer Guide, Thread Safety), and profiles are held per engine (NvInferRuntime.h,
    IExecutionContext: separate profiles for the contexts of one engine in concurrent use)."""
    import threading

    trt_backend, double = backend(make_trt, version)
    options = BuildOptions(device="gpu", batch=2, instances=2)
    plan = trt_backend.build_plan(demo_model, options).plan
    engines = [trt_backend.load_plan(plan, options) for _ in range(2)]
    assert len({id(c) for c in double.contexts}) == 4  # each engine its own two slots
    xs = [np.full((2, 3, 64, 64), v, np.float32) for v in (0.2, 0.9)]
    got: Dict[int, bytes] = {}

    def serve(index: int) -> None:
        for _ in range(5):
            got[index] = engines[index].infer({"images": xs[index]})["logits"].tobytes()

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [got[i] for i in range(2)] == [ort_reference(demo_model, x)["logits"].tobytes() for x in xs]
    for engine in engines:
        engine.close()


@DLA
def test_dla_core_is_applied_at_build_and_run_time(make_trt: Any, demo_model: str, version: str) -> None:
    trt_backend, double = backend(make_trt, version)
    options = BuildOptions(device="dla1", precision="fp16", batch=4, gpu_fallback=True)
    built = trt_backend.build_plan(demo_model, options)
    doc = header(built.plan)
    assert doc["dla_core"] == 1  # config.DLA_core
    assert "GPU_FALLBACK" in doc["flags"]
    assert "FP16" in doc["flags"]
    devices = {row["layer"]: row["device"] for row in built.layer_placement or []}
    # Expected from dla-rules.md §4: GlobalAveragePool is a Reduce-AVG (GPU); a Flatten into a
    # constant-weight Gemm folds into it and the Gemm runs as a 1x1 convolution (DLA).
    assert devices == {"{ForeignNode[conv1...relu2]}": "dla1", "gap": "gpu", "{ForeignNode[flatten...fc]}": "dla1"}
    assert any("falling back to GPU" in line for line in built.build_log)
    runner = trt_backend.load_plan(built.plan, options)
    # The DLA takes static shapes: the runner reports the fixed batch so callers pad to it.
    assert runner.inputs[0].shape == (4, 3, 64, 64)
    runner.infer({"images": np.zeros((4, 3, 64, 64), np.float32)})
    assert double.executions[-1][0] == 1  # runtime.DLA_core was set before deserialising
    # The same plan loaded for another core runs there: the core is a run-time choice.
    trt_backend.load_plan(built.plan, BuildOptions(device="dla0", precision="fp16", batch=4)).infer(
        {"images": np.zeros((4, 3, 64, 64), np.float32)}
    )
    assert double.executions[-1][0] == 0


@DLA
def test_dla_without_fallback_fails_on_a_gpu_only_layer(make_trt: Any, demo_model: str, version: str) -> None:
    trt_backend, _ = backend(make_trt, version)
    # Every generation imports GlobalAveragePool as a Reduce-AVG the DLA cannot run (dla-rules.md §3.15).
    refused = r"gap \(GlobalAveragePool\) cannot run on DLA and GPU fallback is not enabled"
    with pytest.raises(BackendError, match=refused):
        trt_backend.build_plan(demo_model, BuildOptions(device="dla0", precision="fp16", gpu_fallback=False))


def test_no_dla_on_tensorrt_11_0_to_11_3(make_trt: Any, conv_model: str) -> None:
    """An Orin has two DLA cores, but TensorRT 11.1 drives none of them: the library reports 0
    and edged says why instead of building for a core that does not exist."""
    trt_backend, double = backend(make_trt, "11.1", dla=2)
    assert double.hardware_dla_cores == 2 and trt_backend.num_dla_cores() == 0
    with pytest.raises(BackendError, match=r"dla0: TensorRT 11.1.0 has no DLA support .*11.0 to 11.3"):
        trt_backend.build_plan(conv_model, BuildOptions(device="dla0", precision="fp16"))


@DLA
def test_dla_without_fallback_builds_an_all_dla_model(make_trt: Any, conv_model: str, version: str) -> None:
    trt_backend, _ = backend(make_trt, version)
    options = BuildOptions(device="dla0", precision="fp16", gpu_fallback=False, batch=2)
    built = trt_backend.build_plan(conv_model, options)
    assert "GPU_FALLBACK" not in header(built.plan)["flags"]
    placement = built.layer_placement or []
    assert [row["device"] for row in placement] == ["dla0"]
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y = trt_backend.load_plan(built.plan, options).infer({"x": x})["y"]
    np.testing.assert_allclose(y, ort_reference(conv_model, x)["y"], rtol=0, atol=2e-3)


def test_dla_checks_before_tensorrt(make_trt: Any, demo_model: str) -> None:
    trt_backend, _ = backend(make_trt, "8.5", dla=1)
    with pytest.raises(BackendError, match=r"dla1 asked for, this device has 1 DLA core"):
        trt_backend.build_plan(demo_model, BuildOptions(device="dla1", precision="fp16"))
    with pytest.raises(BackendError, match=r"DLA runs fp16 or int8 only"):
        trt_backend.build_plan(demo_model, BuildOptions(device="dla0", precision="fp32"))
    with pytest.raises(BackendError, match=r"tensorrt.dla_pools.managed_sram: 5000 bytes is not a power of two"):
        trt_backend.build_plan(
            demo_model, BuildOptions(device="dla0", precision="fp16", extra={"dla_pools": {"managed_sram": 5000}})
        )


@DLA
def test_dla_pools_and_layer_overrides(make_trt: Any, conv_model: str, version: str) -> None:
    trt_backend, _ = backend(make_trt, version)
    extra = {"dla_pools": {"managed_sram": 1 << 20, "local_dram": 1 << 28}, "layer_devices": {"sigmoid1": "gpu"}}
    options = BuildOptions(device="dla0", precision="fp16", batch=2, extra=extra)
    built = trt_backend.build_plan(conv_model, options)
    assert header(built.plan)["pools"] == {"DLA_MANAGED_SRAM": 1 << 20, "DLA_LOCAL_DRAM": 1 << 28, "WORKSPACE": 1 << 30}
    devices = {row["layer"]: row["device"] for row in built.layer_placement or []}
    assert devices["sigmoid1"] == "gpu"
    bad = BuildOptions(device="dla0", precision="fp16", extra={"layer_devices": {"nope": "gpu"}})
    with pytest.raises(BackendError, match=r"tensorrt.layer_devices: no layer named nope"):
        trt_backend.build_plan(conv_model, bad)


@ALL
def test_foreign_plans_raise_plan_error_with_tensorrts_reason(make_trt: Any, demo_model: str, version: str) -> None:
    other = "10.3" if version != "10.3" else "8.6"
    old_backend, _ = backend(make_trt, other)
    foreign_version = old_backend.build_plan(demo_model, BuildOptions(device="gpu")).plan
    trt_backend, _ = backend(make_trt, version)
    with pytest.raises(PlanError, match=r"not compatible with this version of TensorRT, expecting library version"):
        trt_backend.load_plan(foreign_version, BuildOptions(device="gpu"))
    xavier_backend, _ = backend(make_trt, version, compute=(7, 2))
    foreign_device = xavier_backend.build_plan(demo_model, BuildOptions(device="gpu")).plan
    with pytest.raises(PlanError, match=r"incompatible device, expecting compute 8.7 got compute 7.2"):
        trt_backend.load_plan(foreign_device, BuildOptions(device="gpu"))
    with pytest.raises(PlanError, match=r"Magic Tag does not match"):
        trt_backend.load_plan(b"not a plan", BuildOptions(device="gpu"))
    # What the plan cache does next: rebuild here, and the new plan loads.
    rebuilt = trt_backend.build_plan(demo_model, BuildOptions(device="gpu")).plan
    assert trt_backend.load_plan(rebuilt, BuildOptions(device="gpu")).outputs[0].name == "logits"


def _int8_options(demo_assets: Path, state: Path, device: str = "gpu") -> BuildOptions:
    extra = {
        "calibration_images": str(demo_assets / "images"),
        "preprocess": {"size": [64, 64]},
        "state_dir": str(state),
    }
    return BuildOptions(device=device, precision="int8", batch=2, extra=extra)


@pytest.mark.parametrize("version", ["8.5", "8.6", "10.3"])
@pytest.mark.parametrize("device", ["gpu", "dla0"])
def test_int8_calibration_cache_is_written_then_reused(
    make_trt: Any, demo_model: str, demo_assets: Path, tmp_path: Path, version: str, device: str
) -> None:
    trt_backend, double = backend(make_trt, version)
    options = _int8_options(demo_assets, tmp_path, device)
    first = trt_backend.build_plan(demo_model, options)
    images = len(list((demo_assets / "images").iterdir()))
    assert double.calibration_batches == [(images + 1) // 2]  # every image read once, batch 2
    caches = list((tmp_path / "tensorrt" / "calibration").iterdir())
    assert len(caches) == 1 and caches[0].read_bytes().startswith(b"TRT-")
    assert header(first.plan)["calibration"].endswith("EntropyCalibration2")
    assert {"INT8", "FP16"} <= set(header(first.plan)["flags"])
    trt_backend.build_plan(demo_model, options)
    assert double.calibration_batches[-1] == 0  # the cache answered; no image was read
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert trt_backend.load_plan(first.plan, options).infer({"images": x})["logits"].shape == (2, 10)


def test_int8_without_images_is_a_clear_error(make_trt: Any, demo_model: str, tmp_path: Path) -> None:
    trt_backend, _ = backend(make_trt, "10.3")
    with pytest.raises(BackendError, match=r"calibration.images: precision int8 needs"):
        trt_backend.build_plan(
            demo_model, BuildOptions(device="gpu", precision="int8", extra={"state_dir": str(tmp_path)})
        )
    with pytest.raises(BackendError, match=r"calibration.images: .*nope is not a folder"):
        trt_backend.build_plan(
            demo_model, BuildOptions(device="gpu", precision="int8", extra={"calibration_images": "/nope"})
        )


def test_11_takes_precision_from_the_model(make_trt: Any, demo_model: str, demo_assets: Path, tmp_path: Path) -> None:
    trt_backend, _ = backend(make_trt, "11.1")
    with pytest.raises(AttributeError):
        _ = trt_backend.api.trt.BuilderFlag.FP16  # removed in 11: the backend must not need it
    built = trt_backend.build_plan(demo_model, _int8_options(demo_assets, tmp_path))
    doc = header(built.plan)
    assert "INT8" not in doc["flags"] and doc["calibration"] is None
    assert any(op == "QuantizeLinear" for _, _, op in doc["placement"])  # Q/DQ nodes from ORT's quantiser
    assert built.build_log[0].startswith("INFO: ") and "converted to int8" in built.build_log[0]
    fp16 = trt_backend.build_plan(demo_model, BuildOptions(device="gpu", precision="fp16")).plan
    fp16_runner = trt_backend.load_plan(fp16, BuildOptions(device="gpu"))
    assert fp16_runner.inputs[0].dtype == "float16"  # the whole network is fp16, I/O included
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    want = ort_reference(demo_model, x)["logits"]
    got = trt_backend.load_plan(built.plan, BuildOptions(device="gpu")).infer({"images": x})["logits"]
    np.testing.assert_allclose(got, want, atol=0.25)
    half = fp16_runner.infer({"images": x})["logits"]  # float32 feeds are cast to the plan's float16
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), want, atol=1e-2)


@ALL
def test_parser_errors_name_the_node(make_trt: Any, tmp_path: Path, version: str) -> None:
    model = write_model(tmp_path / "erf.onnx", ["Relu", "Erf"])
    trt_backend, _ = backend(make_trt, version)
    with pytest.raises(
        BackendError, match=r"erf.onnx: TensorRT's ONNX parser failed: erf1: No importer registered for op: Erf"
    ):
        trt_backend.build_plan(str(model), BuildOptions(device="gpu"))


@ALL
def test_progress_and_timing_cache(make_trt: Any, demo_model: str, tmp_path: Path, version: str) -> None:
    trt_backend, _ = backend(make_trt, version)
    seen: List[Tuple[Optional[float], str]] = []
    options = BuildOptions(device="gpu", extra={"state_dir": str(tmp_path)})
    first = trt_backend.build_plan(demo_model, options, progress=lambda f, phase: seen.append((f, phase)))
    fractions = [f for f, _ in seen if f is not None]
    assert seen[0] == (None, "building") and fractions[-1] == 1.0
    if not version.startswith("8."):  # IProgressMonitor exists from 10.0
        assert 0.0 < fractions[1] < 1.0
    else:
        assert fractions == [1.0]
    cache = tmp_path / "tensorrt" / "timing" / f"{trt_backend.version()}-Orin-TensorRT-double-sm87.cache"
    assert cache.is_file()
    assert any("0 hits" in line for line in first.build_log)
    second = trt_backend.build_plan(demo_model, options)
    assert any(re.search(r"[1-9]\d* hits, 0 misses", line) for line in second.build_log)


def test_registry_and_missing_tensorrt(monkeypatch: pytest.MonkeyPatch, make_trt: Any) -> None:
    from edged.backends import REGISTRY, get_backend

    assert REGISTRY["tensorrt"].startswith("edged.backends.tensorrt.")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(BackendUnavailable, match=r"python3-libnvinfer"):
        get_backend("tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", make_trt("10.3"))
    monkeypatch.setenv("EDGED_CUDART", os.devnull)
    import edged.cuda

    monkeypatch.setattr(edged.cuda, "LIBRARY_NAMES", ("libcudart-absent.so",))
    monkeypatch.setattr(edged.cuda, "LIBRARY_DIRS", ())
    monkeypatch.setattr(edged.cuda.load_runtime, "__defaults__", (0, ("libcudart-absent.so",)))
    with pytest.raises(BackendUnavailable, match=r"CUDA runtime library was not found|needs a usable NVIDIA GPU"):
        get_backend("tensorrt")


def test_old_tensorrt_is_refused() -> None:
    from edged.backends.tensorrt.api import import_tensorrt

    class Old:
        __version__ = "8.4.1.5"

    with pytest.raises(BackendUnavailable, match=r"8.4.1.5 is too old; edged needs 8.5"):
        import_tensorrt(Old())


@pytest.mark.parametrize("version", ["8.5", "10.3"])
def test_unusable_timing_cache_is_replaced_not_half_used(
    make_trt: Any, demo_model: str, tmp_path: Path, version: str
) -> None:
    """create_timing_cache gives None for a damaged blob and set_timing_cache returns False for a
    cache timed on another GPU (NvInfer.h v10.3.0); neither may reach the build or the file."""
    trt_backend, _ = backend(make_trt, version)
    options = BuildOptions(device="gpu", extra={"state_dir": str(tmp_path)})
    cache = tmp_path / "tensorrt" / "timing" / f"{trt_backend.version()}-Orin-TensorRT-double-sm87.cache"
    cache.parent.mkdir(parents=True)
    other_gpu, _ = backend(make_trt, version, compute=(7, 5))
    other_gpu.build_plan(demo_model, BuildOptions(device="gpu", extra={"state_dir": str(tmp_path / "other")}))
    foreign = next((tmp_path / "other" / "tensorrt" / "timing").glob("*.cache")).read_bytes()
    for blob in (b"\x00garbage", foreign):
        cache.write_bytes(blob)
        built = trt_backend.build_plan(demo_model, options)
        assert any("0 hits" in line for line in built.build_log)  # a fresh cache, not the unusable one
        assert json.loads(cache.read_bytes())["compute"] == [8, 7]


def test_required_timing_cache_hits_prove_reuse(make_trt: Any, demo_model: str, tmp_path: Path) -> None:
    trt_backend, _ = backend(make_trt, "10.3")
    strict = BuildOptions(device="gpu", extra={"state_dir": str(tmp_path), "require_timing_cache_hits": True})
    with pytest.raises(BackendError, match="Timing cache miss"):
        trt_backend.build_plan(demo_model, strict)  # nothing cached yet
    trt_backend.build_plan(demo_model, BuildOptions(device="gpu", extra={"state_dir": str(tmp_path)}))
    trt_backend.build_plan(demo_model, strict)
    old, _ = backend(make_trt, "8.6")
    with pytest.raises(BackendError, match="needs TensorRT 10 or newer"):
        old.build_plan(demo_model, strict)


def test_dla_capability_flag_needs_a_builder_config_and_gives_a_per_node_answer(make_trt: Any, demo_model: str) -> None:
    """NvOnnxParser.h v10.16: with REPORT_CAPABILITY_DLA "a valid IBuilderConfig must be provided
    to the parser via setBuilderConfig()", and a model not fully DLA-capable then fails to
    parse. edged builds with GPU fallback all the same and reads the per-node answer."""
    trt_backend, _ = backend(make_trt, "10.16")
    built = trt_backend.build_plan(demo_model, BuildOptions(device="dla0", precision="fp16", gpu_fallback=True))
    answer = {row["name"]: row["device"] for row in built.dla_capability or []}
    # Expected from dla-rules.md §4 (GlobalAveragePool = Reduce-AVG on the GPU; Flatten into a
    # constant Gemm folds; the Gemm runs as a 1x1 convolution).
    assert answer == {"conv1": "dla", "relu1": "dla", "conv2": "dla", "relu2": "dla", "gap": "gpu",
                      "flatten": "dla", "fc": "dla"}  # fmt: skip
    assert "INFO: ONNX parser DLA capability: 6 of 7 nodes can run on the DLA" in built.build_log
    older, _ = backend(make_trt, "10.3")  # no REPORT_CAPABILITY_DLA before 10.15
    assert older.build_plan(demo_model, BuildOptions(device="dla0", precision="fp16")).dla_capability is None


@DLA
def test_preprocessing_prefix_runs_on_the_gpu_of_a_dla_plan(make_trt: Any, conv_model: str, version: str) -> None:
    """The prefix (uint8 frames, cast, channel order, layout, mean/std) is pinned to the GPU on
    a DLA plan, so a plan without GPU fallback still builds; the model's own layers stay on
    the DLA, and the plan takes uint8 frames."""
    from edged.backends.input_prefix import FRAME_INPUT, NODE_PREFIX, InputPrefix

    trt_backend, _ = backend(make_trt, version)
    prefix = InputPrefix("rgb", "nchw", 1 / 255, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (8, 8))
    options = BuildOptions(device="dla0", precision="fp16", batch=2, gpu_fallback=False, input_prefix=prefix)
    built = trt_backend.build_plan(conv_model, options)
    devices = {row["layer"]: row["device"] for row in built.layer_placement or []}
    prefix_layers = {name for name in devices if name.startswith(NODE_PREFIX)}
    assert prefix_layers and all(devices[name] == "gpu" for name in prefix_layers)
    assert [devices[name] for name in devices if name not in prefix_layers] == ["dla0"]  # one DLA piece
    runner = trt_backend.load_plan(built.plan, options)
    assert [(s.name, s.dtype) for s in runner.inputs] == [(FRAME_INPUT, "uint8")]
    frames = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = ((frames[..., ::-1].astype(np.float32) / 255 - 0.5) / 0.25).transpose(0, 3, 1, 2)
    got = runner.infer({FRAME_INPUT: frames})["y"]
    np.testing.assert_allclose(got, ort_reference(conv_model, x)["y"], rtol=0, atol=2e-3)  # an fp16 plan
    # Without the pinning the DLA build would need GPU fallback for the cast: the plan key
    # differs from the prefix-less plan's, and the prefix-less plan keeps its float input.
    plain = trt_backend.build_plan(conv_model, BuildOptions(device="dla0", precision="fp16", batch=2))
    assert not any(row["layer"].startswith(NODE_PREFIX) for row in plain.layer_placement or [])
