"""The TensorRT TEST DOUBLE itself: its surface follows the tables and it enforces the
documented invariants, so backend tests against it mean something."""

from __future__ import annotations

import gc
from typing import Any, List, Tuple

import pytest

from tests.trt_double import HostCuda, make_tensorrt


class Recorder:
    def __init__(self, trt: Any) -> None:
        self.lines: List[Tuple[str, str]] = []

    def log(self, severity: Any, message: str) -> None:
        self.lines.append((severity.name, message))


def _network(trt: Any, model: str) -> Tuple[Any, Any, Recorder]:
    logger = Recorder(trt)
    builder = trt.Builder(logger)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    assert trt.OnnxParser(network, logger).parse_from_file(model)
    return builder, network, logger


def test_surface_follows_each_versions_table(demo_model: str) -> None:
    trt86, trt103, trt111 = make_tensorrt("8.6"), make_tensorrt("10.3"), make_tensorrt("11.1")
    assert "execute_async_v2" in trt86.IExecutionContext._names
    assert "execute_async_v2" not in trt103.IExecutionContext._names
    assert not hasattr(make_tensorrt("8.5"), "IProgressMonitor")
    assert hasattr(trt103, "IProgressMonitor") and not hasattr(trt111, "IInt8EntropyCalibrator2")
    with pytest.raises(AttributeError):
        _ = trt111.BuilderFlag.INT8
    with pytest.raises(AttributeError):
        _ = trt111.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    config = _network(trt103, demo_model)[0].create_builder_config()
    with pytest.raises(AttributeError, match="max_workspace_size"):
        _ = config.max_workspace_size  # 8.x only
    with pytest.raises(AttributeError):
        config.max_workspace_size = 1


def test_8x_parser_needs_explicit_batch(demo_model: str) -> None:
    trt = make_tensorrt("8.5")
    logger = Recorder(trt)
    parser = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    assert not parser.parse_from_file(demo_model)
    assert "explicit batch" in parser.get_error(0).desc()


@pytest.mark.parametrize("version", ["8.5", "10.3"])
def test_dla_needs_fp16_or_int8_before_11(conv_model: str, version: str) -> None:
    trt = make_tensorrt(version, dla_cores=2)
    builder, network, logger = _network(trt, conv_model)
    config = builder.create_builder_config()
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = 0
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (2, 3, 8, 8), (2, 3, 8, 8), (2, 3, 8, 8))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is None
    assert any(sev == "ERROR" and "cannot run on DLA" in msg for sev, msg in logger.lines)
    config.set_flag(trt.BuilderFlag.FP16)
    assert builder.build_serialized_network(network, config) is not None


def test_dla_refuses_dynamic_profiles_and_missing_cores(conv_model: str) -> None:
    trt = make_tensorrt("10.3", dla_cores=1)
    builder, network, logger = _network(trt, conv_model)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = 0
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is None
    assert "static shapes" in logger.lines[-1][1]
    profile.set_shape("x", (2, 3, 8, 8), (2, 3, 8, 8), (2, 3, 8, 8))
    config.DLA_core = 1
    assert builder.build_serialized_network(network, config) is None
    assert "DLA core 1 not available" in logger.lines[-1][1]


def test_foreign_plans_deserialise_to_none_with_nvidias_message(demo_model: str) -> None:
    old = make_tensorrt("8.6")
    builder, network, _ = _network(old, demo_model)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 64, 64))
    config.add_optimization_profile(profile)
    plan = bytes(builder.build_serialized_network(network, config))
    new = make_tensorrt("10.3")
    logger = Recorder(new)
    assert new.Runtime(logger).deserialize_cuda_engine(plan) is None
    assert logger.lines == [
        (
            "ERROR",
            "The engine plan file is not compatible with this version of TensorRT, expecting library version "
            "10.3.0 got 8.6.1, please rebuild.",
        )
    ]
    assert old.Runtime(Recorder(old)).deserialize_cuda_engine(plan) is not None


def test_execution_refuses_addresses_outside_live_buffers(demo_model: str) -> None:
    trt = make_tensorrt("10.3")
    builder, network, logger = _network(trt, demo_model)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 64, 64))
    config.add_optimization_profile(profile)
    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(builder.build_serialized_network(network, config)))
    context = engine.create_execution_context()
    cuda = HostCuda()
    inp, out = cuda.malloc(3 * 64 * 64 * 4), cuda.malloc(10 * 4)
    context.set_tensor_address("images", inp.device_ptr)
    assert not context.execute_async_v3(0)  # output address never set
    context.set_tensor_address("logits", out.device_ptr)
    context.set_input_shape("images", (1, 3, 64, 64))
    assert context.execute_async_v3(0)
    out.free()
    with pytest.raises(ValueError, match="not inside a live buffer"):
        inp.free()
        context.execute_async_v3(0)


def test_report_capability_dla_without_a_builder_config_fails_to_parse(demo_model: str, conv_model: str) -> None:
    trt = make_tensorrt("10.16", dla_cores=2)
    builder = trt.Builder(Recorder(trt))
    parser = trt.OnnxParser(builder.create_network(0), Recorder(trt))
    parser.set_flag(trt.OnnxParserFlag.REPORT_CAPABILITY_DLA)
    assert not parser.parse_from_file(conv_model)
    assert "set_builder_config" in parser.get_error(0).desc()
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    parser = trt.OnnxParser(builder.create_network(0), Recorder(trt))
    parser.set_flag(trt.OnnxParserFlag.REPORT_CAPABILITY_DLA)
    assert parser.set_builder_config(config)
    assert parser.parse_from_file(conv_model)  # every node DLA-capable
    parser = trt.OnnxParser(builder.create_network(0), Recorder(trt))
    parser.set_flag(trt.OnnxParserFlag.REPORT_CAPABILITY_DLA)
    parser.set_builder_config(config)
    assert not parser.parse_from_file(demo_model)  # "not fully supported by DLA, then parsing will fail"
    assert "gap (GlobalAveragePool) is not supported on DLA" in parser.get_error(0).desc()
    with pytest.raises(AttributeError):
        _ = make_tensorrt("10.3").OnnxParserFlag.REPORT_CAPABILITY_DLA


@pytest.mark.parametrize("iface", ["ILogger", "IInt8EntropyCalibrator2", "IProgressMonitor"])
def test_subclasses_must_call_the_base_init(iface: str) -> None:
    trt = make_tensorrt("10.3")
    base = getattr(trt, iface)

    class Forgetful(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.seen = 0

    class Careful(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)

    with pytest.raises(TypeError, match=rf"tensorrt.{iface}.__init__\(\) must be called when overriding __init__"):
        Forgetful()
    Careful()


def test_assigning_a_name_the_version_lacks_raises(conv_model: str) -> None:
    for version, name in (("10.3", "max_workspace_size"), ("11.1", "int8_calibrator"), ("8.5", "progress_monitor")):
        trt = make_tensorrt(version)
        config = trt.Builder(Recorder(trt)).create_builder_config()
        with pytest.raises(AttributeError, match=name):
            setattr(config, name, 1)


@pytest.mark.parametrize(("version", "second"), [("8.5", -1), ("8.6", -1), ("10.3", 0), ("10.16", 0)])
def test_second_context_on_profile_0_is_refused_before_10(demo_model: str, version: str, second: int) -> None:
    """NvInferRuntime.h: 8.5.2 gives profile 0 to the first context only, 8.6.1 only while no
    other context holds it, 10.x to every new context; before 10 a profile another context
    holds is refused ("Profile 0 has been chosen by another IExecutionContext")."""
    trt = make_tensorrt(version)
    builder, network, logger = _network(trt, demo_model)
    config = builder.create_builder_config()
    for _ in range(2):
        profile = builder.create_optimization_profile()
        profile.set_shape("images", (1, 3, 64, 64), (2, 3, 64, 64), (2, 3, 64, 64))
        config.add_optimization_profile(profile)
    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(builder.build_serialized_network(network, config)))
    assert engine.num_optimization_profiles == 2
    first, other = engine.create_execution_context(), engine.create_execution_context()
    assert first.active_optimization_profile == 0 and other.active_optimization_profile == second
    assert other.set_optimization_profile_async(0, 0) is (version.startswith("10."))
    if version.startswith("8."):
        assert "Profile 0 has been chosen by another IExecutionContext" in logger.lines[-1][1]
        assert not other.set_input_shape("images", (2, 3, 64, 64))  # no profile yet
    assert other.set_optimization_profile_async(1, 0) and other.set_input_shape("images", (2, 3, 64, 64))
    del first
    gc.collect()
    third = engine.create_execution_context()  # profile 0 is free again
    assert third.active_optimization_profile == (-1 if version == "8.5" else 0)
