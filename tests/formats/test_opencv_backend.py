"""Caffe models on the CPU through OpenCV's dnn reader (real OpenCV, real inference)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from caffe_writer import TinyCaffeNet

from edged.backends import get_backend
from edged.backends.base import BuildOptions
from edged.backends.opencv.backend import pack_plan
from edged.config import parse_config
from edged.daemon import Daemon
from edged.errors import BackendError, ConfigError, PlanError
from edged.formats import ModelFormat
from edged.formats.prototxt import caffe_inputs


def _options(files: Dict[str, Path], outputs: tuple = ("fc",)) -> BuildOptions:
    return BuildOptions(model_format=ModelFormat(type="caffe", prototxt=str(files["prototxt"]), outputs=outputs))


def test_caffe_model_matches_numpy_reference(tiny_caffe: Dict[str, Path]) -> None:
    backend = get_backend("opencv")
    options = _options(tiny_caffe)
    runner = backend.load_plan(backend.build_plan(str(tiny_caffe["caffemodel"]), options).plan, options)
    assert [(s.name, s.shape) for s in runner.inputs] == [("data", (None, 3, 8, 8))]
    assert [(s.name, s.shape) for s in runner.outputs] == [("fc", (None, 5))]
    x = np.random.default_rng(7).normal(size=(3, 3, 8, 8)).astype(np.float32)
    out = runner.infer({"data": x})["fc"]
    expected = TinyCaffeNet().reference(x)
    assert out.shape == (3, 5)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    # A different model's weights give a different answer: the weights really were read.
    assert np.abs(TinyCaffeNet(seed=1).reference(x) - out).max() > 1e-2
    runner.close()


def test_unknown_output_blob_is_named(tiny_caffe: Dict[str, Path]) -> None:
    backend = get_backend("opencv")
    with pytest.raises(BackendError, match="no blob named prob"):
        backend.build_plan(str(tiny_caffe["caffemodel"]), _options(tiny_caffe, ("prob",)))


def test_foreign_or_truncated_plans_are_refused(tiny_caffe: Dict[str, Path]) -> None:
    backend = get_backend("opencv")
    options = _options(tiny_caffe)
    with pytest.raises(PlanError, match="not an OpenCV Caffe plan"):
        backend.load_plan(b"\x08\x01 an onnx model", options)
    plan = pack_plan(tiny_caffe["prototxt"].read_bytes(), tiny_caffe["caffemodel"].read_bytes(), ["fc"])
    with pytest.raises(PlanError):
        backend.load_plan(plan[:40], options)


def test_other_formats_devices_and_precisions_are_refused(tiny_caffe: Dict[str, Path]) -> None:
    backend = get_backend("opencv")
    path = str(tiny_caffe["caffemodel"])
    with pytest.raises(BackendError, match="reads caffe models, not onnx"):
        backend.build_plan(path, BuildOptions())
    fmt = _options(tiny_caffe).model_format
    with pytest.raises(BackendError, match="runs on the CPU"):
        backend.build_plan(path, BuildOptions(device="gpu", model_format=fmt))
    with pytest.raises(BackendError, match="fp32"):
        backend.build_plan(path, BuildOptions(precision="fp16", model_format=fmt))


def test_prototxt_inputs_in_every_declaration_style() -> None:
    assert caffe_inputs('input: "a"\ninput_dim: 1 input_dim: 3 input_dim: 4 input_dim: 5') == [("a", (1, 3, 4, 5))]
    layer = 'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 6 } } }  # comment'
    assert caffe_inputs(layer) == [("x", (2, 6))]
    with pytest.raises(ConfigError, match="declares no input"):
        caffe_inputs('layer { name: "r" type: "ReLU" }')
    with pytest.raises(ConfigError, match="missing '}'"):
        caffe_inputs('input: "a" input_shape { dim: 1')


def test_a_caffe_config_runs_in_the_daemon(tiny_caffe: Dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    config = parse_config(
        {
            "device": {"id": "dev-box"},
            "plans": {"cache_dir": str(tmp_path / "plans")},
            "models": [
                {
                    "name": "tiny",
                    "path": str(tiny_caffe["caffemodel"]),
                    "format": {"type": "caffe", "prototxt": str(tiny_caffe["prototxt"]), "outputs": ["fc"]},
                    "batch": 2,
                    "source": {"type": "synthetic", "fps": 0, "count": 6, "size": [8, 8]},
                    "postprocess": {"type": "classify", "top_k": 2},
                    "sink": {"type": "jsonl", "path": str(out)},
                }
            ],
        }
    )
    assert config.models[0].backend == "opencv"
    daemon = Daemon(config)
    assert daemon.run(duration_s=20) == 0
    assert daemon.models.slots["tiny"].error is None
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6
