"""NVIDIA's public DLA tutorial network, predicted by edged and built by the TensorRT TEST
DOUBLE, against the placement NVIDIA published for it.

NVIDIA-AI-IOT/jetson_dla_tutorial README (commit ee4e0ed, AGX Orin, ``trtexec --int8
--useDLACore=0 --allowGPUFallback --shapes=input:32x3x32x32`` on model_bn.onnx): "[DlaLayer]
{ForeignNode[Conv_0...Relu_7]}", "[DlaLayer] {ForeignNode[Gemm_15 + linear.bias + ...]}",
"[GpuLayer] REDUCE: GlobalAveragePool_8". The double's placement comes from its own table
(tests/trt_double/dla.py), not from edged's rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import onnx
import pytest

from edged.backends.base import BuildOptions
from edged.cli import EXIT_OK, main
from edged.placement.analysis import analyse
from edged.placement.graph import load_graph
from edged.placement.observed import compare_reported
from tests.placement import nets


@pytest.fixture()
def model_bn(tmp_path: Path) -> str:
    path = tmp_path / "model_bn.onnx"
    onnx.save(nets.dla_tutorial_model_bn(), str(path))
    return str(path)


def _published() -> Dict[str, str]:
    conv = {f"Conv_{i}": "dla" for i in (0, 2, 4, 6)}
    relu = {f"Relu_{i}": "dla" for i in (1, 3, 5, 7)}
    return {**conv, **relu, "GlobalAveragePool_8": "gpu", "Reshape_14": "dla", "Gemm_15": "dla"}


def test_explain_at_batch_32_int8_puts_the_linear_on_the_dla(model_bn: str, capsys: pytest.CaptureFixture) -> None:
    argv = ["placement", "explain", "--platform", "agx-orin-64gb", "--batch", "32", "--precision", "int8", "--json"]
    assert main([*argv, model_bn]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)["models"]["model_bn"]
    devices = {n["name"]: n["device"] for n in report["nodes"] if n["device"] in ("dla", "gpu")}
    assert devices == _published()
    # The only unknown in the declared shapes is the batch, fixed at 32 for the build.
    assert not any("dynamic" in (n["detail"] or "") for n in report["nodes"])
    assert report["dla_subgraphs"] == 2


@pytest.mark.parametrize("version", ["8.5", "10.3"])
def test_the_double_builds_what_nvidia_published_and_edged_agrees(model_bn: str, version: str) -> None:
    from edged.backends.tensorrt.backend import TensorRTBackend
    from tests.trt_double import HostCuda, make_tensorrt

    backend = TensorRTBackend(make_tensorrt(version, dla_cores=2), HostCuda())
    built = backend.build_plan(model_bn, BuildOptions(device="dla0", precision="fp16", batch=32, gpu_fallback=True))
    layers = {row["layer"]: row["device"] for row in built.layer_placement or []}
    assert layers == {
        "{ForeignNode[Conv_0...Relu_7]}": "dla0",
        "GlobalAveragePool_8": "gpu",
        "{ForeignNode[Reshape_14...Gemm_15]}": "dla0",
    }
    analysis = analyse(
        load_graph(model_bn, batch=32), precision="fp16", trt_version=version, dla_generation=2, model="model_bn"
    )
    assert {n.name: n.device for n in analysis.placed} == _published()
    assert compare_reported(analysis, built.layer_placement or [], "inspector") == []
