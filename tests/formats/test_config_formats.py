from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from edged.backends.base import BuildOptions
from edged.config import check_document, load_config, parse_config
from edged.errors import ConfigError
from edged.formats import ModelFormat, UffInput
from edged.model_loading import build_options


def _doc(model: Dict[str, Any], defaults: Dict[str, Any] | None = None) -> Dict[str, Any]:
    device: Dict[str, Any] = {"id": "d1"}
    if defaults:
        device["defaults"] = defaults
    return {"device": device, "models": [{"name": "m", "path": "/models/m.bin", **model}]}


def test_onnx_is_the_default_and_keeps_its_backend_and_key() -> None:
    model = parse_config(_doc({})).models[0]
    assert model.format == ModelFormat(type="onnx")
    assert model.backend == "onnxruntime"
    assert "format" not in build_options(model).as_key_document()


@pytest.mark.parametrize(
    ("fmt", "missing"),
    [
        ({"type": "caffe"}, ["models[0].format.prototxt", "models[0].format.outputs"]),
        ({"type": "caffe", "prototxt": "d.prototxt"}, ["models[0].format.outputs"]),
        ({"type": "uff"}, ["models[0].format.inputs", "models[0].format.outputs"]),
        ({"type": "uff", "inputs": [{"order": "nchw"}], "outputs": ["o"]}, ["models[0].format.inputs[0].name"]),
        ({"type": "network-builder"}, ["models[0].format.builder"]),
    ],
)
def test_missing_pieces_are_named_per_format(fmt: Dict[str, Any], missing: list) -> None:
    problems = check_document(_doc({"format": fmt}))
    for key in missing:
        assert f"{key}: required key is missing" in problems
    assert len(problems) >= len(missing)


def test_keys_of_another_format_are_refused() -> None:
    problems = check_document(_doc({"format": {"type": "onnx", "prototxt": "x"}, "backend": "onnxruntime"}))
    assert problems == ["models[0].format.prototxt: unknown key"]


def test_builder_spec_must_be_module_colon_function() -> None:
    problems = check_document(_doc({"format": {"type": "network-builder", "builder": "mynet.build"}}))
    assert len(problems) == 1 and problems[0].startswith("models[0].format.builder: 'mynet.build' does not match")


def test_uff_has_no_cpu_road() -> None:
    doc = _doc(
        {"backend": "onnxruntime", "format": {"type": "uff", "inputs": [{"name": "x", "shape": [3]}], "outputs": ["y"]}}
    )
    (problem,) = check_document(doc)
    assert problem.startswith("models[0].format.type: backend 'onnxruntime' cannot read uff models")
    assert "no CPU road" in problem


def test_format_backends_follow_device_defaults_and_name_them() -> None:
    doc = _doc({"format": {"type": "caffe", "prototxt": "d.prototxt", "outputs": ["prob"]}}, {"backend": "onnxruntime"})
    (problem,) = check_document(doc)
    assert "(from device.defaults.backend)" in problem and "opencv or tensorrt" in problem
    builder = _doc({"backend": "opencv", "format": {"type": "network-builder", "builder": "m:f"}})
    (problem,) = check_document(builder)
    assert "runs only with backend tensorrt" in problem


def test_typed_sections_and_default_backends() -> None:
    caffe = parse_config(_doc({"format": {"type": "caffe", "prototxt": "/d.prototxt", "outputs": ["prob"]}}))
    assert caffe.models[0].backend == "opencv"
    assert caffe.models[0].format == ModelFormat(type="caffe", prototxt="/d.prototxt", outputs=("prob",))
    uff_doc = _doc({"format": {"type": "uff", "inputs": [{"name": "in", "shape": [3, 4, 5]}], "outputs": ["out"]}})
    uff = parse_config(uff_doc).models[0]
    assert uff.backend == "tensorrt"
    assert uff.format.inputs == (UffInput("in", (3, 4, 5), "nchw"),)
    options = build_options(uff)
    assert options.model_format is uff.format
    assert options.as_key_document()["format"] == {
        "type": "uff",
        "inputs": [["in", [3, 4, 5], "nchw"]],
        "outputs": ["out"],
    }


def test_outputs_and_inputs_shape_the_key_but_paths_do_not() -> None:
    one = BuildOptions(model_format=ModelFormat(type="caffe", prototxt="/a/d.prototxt", outputs=("prob",)))
    moved = BuildOptions(model_format=ModelFormat(type="caffe", prototxt="/b/d.prototxt", outputs=("prob",)))
    other = BuildOptions(model_format=ModelFormat(type="caffe", prototxt="/a/d.prototxt", outputs=("fc",)))
    assert one.as_key_document() == moved.as_key_document() != other.as_key_document()


def test_relative_format_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    doc = _doc({"path": "net.caffemodel", "format": {"type": "caffe", "prototxt": "net.prototxt", "outputs": ["prob"]}})
    (tmp_path / "edged.yaml").write_text(yaml.safe_dump(doc))
    model = load_config(tmp_path / "edged.yaml").models[0]
    assert model.path == str(tmp_path / "net.caffemodel")
    assert model.format.prototxt == str(tmp_path / "net.prototxt")


def test_check_config_lists_format_problems(tmp_path: Path) -> None:
    doc = _doc({"format": {"type": "uff", "inputs": [{"name": "x", "shape": [3]}]}, "backend": "onnxruntime"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "models[0].format.outputs: required key is missing" in proc.stderr
    assert "no CPU road" in proc.stderr
    with pytest.raises(ConfigError):
        parse_config(doc)
