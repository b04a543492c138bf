"""Caffe, UFF and network-builder models through the TensorRT backend, against the
TensorRT TEST DOUBLE (tests/trt_double) of each generation, not real TensorRT."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import onnxruntime
import pytest
import yaml
from caffe_writer import TinyCaffeNet

from edged.backends.base import BuildOptions
from edged.backends.tensorrt.backend import TensorRTBackend
from edged.backends.tensorrt.formats import format_unsupported
from edged.config import parse_config
from edged.config.model import ModelConfig
from edged.errors import BackendError, NetworkBuilderError
from edged.formats import ModelFormat, UffInput
from edged.model_loading import build_options
from edged.plans import PlanManager, PlanStore
from edged.platform.model import GpuInfo, Platform
from tests.trt_double import HostCuda, make_tensorrt

_COUNTER = itertools.count()
REPO = Path(__file__).resolve().parents[2]
PLATFORM = Platform("dgpu", "x86_64", gpus=(GpuInfo("NVIDIA RTX A4000", "8.6", 48, 16376),))

BUILDER = """\
import numpy as np
import onnxruntime


def build(trt, network, weights_path):
    w = np.load(weights_path)
    x = network.add_input("x", trt.DataType.FLOAT, (1, 3, 8, 8))
    conv = network.add_convolution_nd(x, 4, (3, 3), w["conv_w"], w["conv_b"])
    conv.padding_nd = (1, 1)
    relu = network.add_activation(conv.get_output(0), trt.ActivationType.RELU)
    relu.get_output(0).name = "y"
    network.mark_output(relu.get_output(0))


def broken(trt, network, weights_path):
    x = network.add_input("x", trt.DataType.FLOAT, (1, 3, 8, 8))
    network.add_convolution_nd(x, 4, (3, 3), np.zeros(5, np.float32), None)
"""


def _backend(version: str) -> Tuple[TensorRTBackend, Any]:
    trt = make_tensorrt(version, compute=(8, 6))
    return TensorRTBackend(trt, HostCuda(compute_capability=(8, 6))), trt


def _caffe_options(files: Dict[str, Path]) -> BuildOptions:
    return BuildOptions(
        device="gpu", model_format=ModelFormat(type="caffe", prototxt=str(files["prototxt"]), outputs=("fc",))
    )


@pytest.fixture()
def builder_files(tmp_path: Path) -> Iterator[Dict[str, Any]]:
    module = f"user_net_{next(_COUNTER)}"
    (tmp_path / f"{module}.py").write_text(BUILDER)
    rng = np.random.default_rng(3)
    weights = {"conv_w": rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "conv_b": rng.normal(0, 0.1, 4)}
    np.savez(tmp_path / "net.npz", **weights)
    yield {"module": module, "dir": tmp_path, "weights": tmp_path / "net.npz", "arrays": weights}
    sys.modules.pop(module, None)


@pytest.mark.parametrize("version", ["8.5", "8.6"])
def test_caffe_builds_and_runs_on_8x(tiny_caffe: Dict[str, Path], version: str) -> None:
    backend, trt = _backend(version)
    options = _caffe_options(tiny_caffe)
    runner = backend.load_plan(backend.build_plan(str(tiny_caffe["caffemodel"]), options).plan, options)
    assert [(s.name, s.shape) for s in runner.inputs] == [("data", (1, 3, 8, 8))]  # explicit batch: fixed to 1
    x = np.random.default_rng(5).normal(size=(1, 3, 8, 8)).astype(np.float32)
    out = runner.infer({"data": x})["fc"]
    assert out.shape == (1, 5, 1, 1)
    np.testing.assert_allclose(out.reshape(1, 5), TinyCaffeNet().reference(x), rtol=1e-4, atol=1e-5)
    assert [type(p).__name__ for p in trt._double.parsers] == ["CaffeParser"]


@pytest.mark.parametrize("version", ["10.3", "11.1"])
@pytest.mark.parametrize("fmt", ["caffe", "uff"])
def test_caffe_and_uff_fail_on_10_and_11_naming_the_version(
    tiny_caffe: Dict[str, Path], version: str, fmt: str
) -> None:
    backend, trt = _backend(version)
    assert not hasattr(trt, "CaffeParser") and not hasattr(trt, "UffParser")
    spec = (
        ModelFormat(type="caffe", prototxt=str(tiny_caffe["prototxt"]), outputs=("fc",))
        if fmt == "caffe"
        else ModelFormat(type="uff", inputs=(UffInput("in", (3, 8, 8), "nchw"),), outputs=("out",))
    )
    gone = rf"{fmt} models need \w+Parser, which TensorRT {version}.0 no longer has .*removed in 9.0"
    with pytest.raises(BackendError, match=gone):
        backend.build_plan(str(tiny_caffe["caffemodel"]), BuildOptions(device="gpu", model_format=spec))
    assert trt._double.loggers == []  # refused before a Builder existed


def test_uff_registers_inputs_and_outputs_on_8x(tmp_path: Path) -> None:
    backend, trt = _backend("8.6")
    fmt = ModelFormat(type="uff", inputs=(UffInput("input", (3, 224, 224), "nhwc"),), outputs=("logits",))
    (tmp_path / "m.uff").write_bytes(b"uff")
    with pytest.raises(BackendError, match="UFF parser failed"):
        backend.build_plan(str(tmp_path / "m.uff"), BuildOptions(device="gpu", model_format=fmt))
    (uff,) = trt._double.parsers
    assert uff._inputs == [("input", (3, 224, 224), trt.UffInputOrder.NHWC)]
    assert uff._outputs == ["logits"] and uff._parsed == str(tmp_path / "m.uff")


def test_format_unsupported_by_version() -> None:
    assert format_unsupported("caffe", "8.5.2") is None and format_unsupported("uff", "8.6.1") is None
    assert format_unsupported("network-builder", "11.1.0") is None and format_unsupported("onnx", "10.3.0") is None
    assert "TensorRT 10.3.0 no longer has" in (format_unsupported("uff", "10.3.0") or "")
    # Gone from 9.0 on, still there in 8.6 (JetPack 6.0): NVIDIA/TensorRT binds pyCaffe/pyUff up
    # to v8.6.1 and only pyOnnx at v9.1.0.
    assert format_unsupported("caffe", "8.6.2") is None and format_unsupported("uff", "8.6.2") is None
    for version in ("9.1.0", "9.3.0"):
        assert f"TensorRT {version} no longer has" in (format_unsupported("caffe", version) or "")
    text = format_unsupported("uff", "10.3.0") or ""
    assert "removed in 9.0" in text and "8.6 (JetPack 6.0) still have them" in text


def _model(doc_model: Dict[str, Any]) -> ModelConfig:
    return parse_config({"device": {"id": "d"}, "models": [{"name": "m", "backend": "tensorrt", **doc_model}]}).models[
        0
    ]


def _manager(tmp_path: Path) -> PlanManager:
    return PlanManager(PlanStore(str(tmp_path / "plans")), PLATFORM)


def test_caffe_plan_is_cached_and_keyed_by_prototxt(tiny_caffe: Dict[str, Path], tmp_path: Path) -> None:
    backend, _ = _backend("8.5")
    fmt = {"type": "caffe", "prototxt": str(tiny_caffe["prototxt"]), "outputs": ["fc"]}
    model = _model({"path": str(tiny_caffe["caffemodel"]), "format": fmt})
    manager = _manager(tmp_path)
    from edged.plans.manager import PlanProgress

    first, second = PlanProgress(), PlanProgress()
    runner, key = manager.obtain(model, backend, build_options(model), first)
    runner.close()
    runner, again = manager.obtain(model, backend, build_options(model), second)
    runner.close()
    assert (first.source, second.source, key.digest) == ("built", "cache", again.digest)
    assert set(key.document["inputs"]) == {"format.prototxt"}
    assert key.document["options"]["format"] == {"type": "caffe", "outputs": ["fc"]}
    tiny_caffe["prototxt"].write_text(tiny_caffe["prototxt"].read_text().replace("num_output: 5", "num_output: 5 "))
    assert manager.key(model, backend, build_options(model)).digest != key.digest


@pytest.mark.parametrize("version", ["8.5", "10.3"])
def test_network_builder_builds_a_two_layer_network(builder_files: Dict[str, Any], version: str) -> None:
    backend, _ = _backend(version)
    fmt = ModelFormat(
        type="network-builder", builder=f"{builder_files['module']}:build", python_path=str(builder_files["dir"])
    )
    options = BuildOptions(device="gpu", model_format=fmt)
    runner = backend.load_plan(backend.build_plan(str(builder_files["weights"]), options).plan, options)
    x = np.random.default_rng(9).normal(size=(1, 3, 8, 8)).astype(np.float32)
    y = runner.infer({"x": x})["y"]
    w, b = builder_files["arrays"]["conv_w"], builder_files["arrays"]["conv_b"]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = sum(
        np.einsum("nchw,oc->nohw", padded[:, :, dy : dy + 8, dx : dx + 8], w[:, :, dy, dx])
        for dy in range(3)
        for dx in range(3)
    )
    expected = np.maximum(expected + b[None, :, None, None], 0)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_editing_one_line_of_the_builder_changes_the_plan_key(builder_files: Dict[str, Any], tmp_path: Path) -> None:
    backend, _ = _backend("8.6")
    fmt = {
        "type": "network-builder",
        "builder": f"{builder_files['module']}:build",
        "python_path": str(builder_files["dir"]),
    }
    model = _model({"path": str(builder_files["weights"]), "format": fmt})
    manager = _manager(tmp_path)
    runner, key = manager.obtain(model, backend, build_options(model))
    runner.close()
    assert {"format.builder_source", "format.builder_module"} <= set(key.document["inputs"])
    source = builder_files["dir"] / f"{builder_files['module']}.py"
    source.write_text(source.read_text().replace("conv.padding_nd = (1, 1)", "conv.padding_nd = (1, 1)  # same"))
    assert manager.key(model, backend, build_options(model)).digest != key.digest


def test_a_raising_builder_reports_the_users_line(builder_files: Dict[str, Any]) -> None:
    backend, _ = _backend("8.5")
    fmt = ModelFormat(
        type="network-builder", builder=f"{builder_files['module']}:broken", python_path=str(builder_files["dir"])
    )
    with pytest.raises(NetworkBuilderError) as info:
        backend.build_plan(str(builder_files["weights"]), BuildOptions(device="gpu", model_format=fmt))
    line = BUILDER.splitlines().index("    network.add_convolution_nd(x, 4, (3, 3), np.zeros(5, np.float32), None)") + 1
    source = builder_files["dir"] / f"{builder_files['module']}.py"
    assert f"at {source}, line {line}: network.add_convolution_nd(" in str(info.value)
    assert "edged/" not in str(info.value).split(" at ")[-1]
    assert "trt_double" not in str(info.value)


def test_builder_removed_api_raises_as_the_real_module_would(builder_files: Dict[str, Any]) -> None:
    trt = make_tensorrt("10.3")
    network = trt.Builder(trt.ILogger()).create_network(0)
    with pytest.raises(AttributeError, match="add_fully_connected"):
        network.add_fully_connected  # noqa: B018 - removed in 10.0
    assert callable(make_tensorrt("8.5").Builder(trt.ILogger()).create_network(0).add_fully_connected)


@pytest.mark.parametrize(("version", "ok"), [("8.6.1", True), ("10.3.0", False), ("11.1.0", False)])
def test_check_config_on_the_device_names_the_tensorrt_version(
    tiny_caffe: Dict[str, Path], tmp_path: Path, version: str, ok: bool
) -> None:
    # check-config reads only the installed module's __version__; a one-line module carrying
    # that string stands in for the device's tensorrt package here.
    stand_in = tmp_path / "site"
    stand_in.mkdir()
    (stand_in / "tensorrt.py").write_text(f'__version__ = "{version}"\n')
    fmt = {"type": "caffe", "prototxt": str(tiny_caffe["prototxt"]), "outputs": ["fc"]}
    model = {"name": "m", "backend": "tensorrt", "path": str(tiny_caffe["caffemodel"]), "format": fmt}
    doc = {"device": {"id": "d"}, "models": [model]}
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stand_in), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 2
        expected = f"models[0].format.type: caffe models need CaffeParser, which TensorRT {version}"
        assert expected in proc.stderr


@pytest.mark.parametrize("version", ["8.5", "8.6"])
def test_uff_builds_an_implicit_batch_network_and_runs_with_execute_async(tmp_path: Path, version: str) -> None:
    """The UFF parser refuses explicit batch (NVIDIA/TensorRT 8.5.2 samples: createNetworkV2(0));
    the engine then runs through execute_async(batch, bindings, stream), not enqueueV3. The
    double reads an ONNX model in the .uff file's place (UFF protobufs are not modelled)."""
    from tests.backends.conftest import write_model

    model = write_model(tmp_path / "m.uff", ["Relu"])
    backend, trt = _backend(version)
    fmt = ModelFormat(type="uff", inputs=(UffInput("x", (3, 8, 8), "nchw"),), outputs=("y",))
    options = BuildOptions(device="gpu", batch=4, model_format=fmt)
    runner = backend.load_plan(backend.build_plan(str(model), options).plan, options)
    assert [spec.shape for spec in runner.inputs] == [(None, 3, 8, 8)]
    x = np.random.default_rng(3).standard_normal((3, 3, 8, 8)).astype(np.float32)
    ort = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert runner.infer({"x": x})["y"].tobytes() == ort.run(None, {"x": x})[0].tobytes()
    with pytest.raises(BackendError, match=r"does not fit the plan's \[1..4\]"):
        runner.infer({"x": np.zeros((5, 3, 8, 8), np.float32)})
    runner.close()
    # The library's refusals the runner must not run into.
    network = trt.Builder(backend.logger).create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    assert not trt.UffParser().parse(str(model), network)
