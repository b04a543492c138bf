"""Path confinement per field: each path a push can set has its own allowed places, and
a sink never writes to a file a model reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

from edged.config import parse_config
from edged.control.payload import PushRejected, parse_push
from edged.control.settings import control_settings
from edged.formats.hashing import format_input_hashes
from edged.formats.spec import ModelFormat
from tests.control.conftest import serving_model


def _push(base_doc: Dict[str, Any], models: List[Dict[str, Any]], **patch: Any) -> Dict[str, Any]:
    config = parse_config(base_doc)
    raw = json.dumps({"version": 2, "patch": dict(patch, models=models)}).encode()
    return parse_push(raw, config, control_settings(config)).document


def _refused(base_doc: Dict[str, Any], models: List[Dict[str, Any]], **patch: Any) -> List[str]:
    with pytest.raises(PushRejected) as info:
        _push(base_doc, models, **patch)
    return info.value.problems


def _with(model: Dict[str, Any], **sections: Any) -> Dict[str, Any]:
    return dict(model, **sections)


def test_a_sink_may_not_write_to_a_model_file_in_force_or_pushed(
    base_doc: Dict[str, Any], control_dirs: Dict[str, Path]
) -> None:
    base = base_doc["models"][0]
    model_file = base["path"]
    # The model file in force, named as a sink: its path is "in use", but not as a sink.
    problems = _refused(base_doc, [_with(base, sink={"type": "jsonl", "path": model_file})])
    assert problems == [
        f"models[0].sink.path: {model_file!r} is outside control.data_dirs {[str(control_dirs['data'])]}"
    ]
    # Where data and model directories overlap, confinement alone would let it through.
    base_doc["control"]["data_dirs"].append(str(control_dirs["models"]))
    problems = _refused(base_doc, [_with(base, sink={"type": "jsonl", "path": model_file})])
    assert problems == [
        f"models[0].sink.path: {model_file!r} is read by models[0] 'base' (path, in this push); "
        "a sink may never write to a file a model reads"
    ]
    # A push that drops the model may still not overwrite it: it is read by the config in force.
    replacement = _with(serving_model("other", str(control_dirs["models"] / "second.onnx")))
    problems = _refused(base_doc, [_with(replacement, sink={"type": "jsonl", "path": model_file})])
    assert problems == [
        f"models[0].sink.path: {model_file!r} is read by models[0] 'base' (path, in the config in force); "
        "a sink may never write to a file a model reads"
    ]
    base_doc["control"]["data_dirs"].pop()
    # A hard link to it inside the data directory is the same file.
    link = control_dirs["data"] / "innocent.jsonl"
    os.link(model_file, link)
    added = _with(
        serving_model("new", str(control_dirs["models"] / "second.onnx")), sink={"type": "jsonl", "path": str(link)}
    )
    problems = _refused(base_doc, [base, added])
    assert len(problems) == 1 and "is read by models[0] 'base' (path, in this push)" in problems[0], problems
    # Labels another model of the same push reads.
    labels = control_dirs["data"] / "labels.txt"
    labels.write_text("a\nb\n")
    (control_dirs["models"] / "labels.txt").write_text("a\nb\n")
    reader = _with(base, postprocess={"type": "classify", "labels": str(control_dirs["models"] / "labels.txt")})
    writer = _with(added, sink={"type": "jsonl", "path": str(control_dirs["models"] / "labels.txt")})
    problems = _refused(base_doc, [reader, writer])
    assert any("models[1].sink.path" in p and "is outside control.data_dirs" in p for p in problems), problems


def test_every_path_field_is_confined_to_its_kind(base_doc: Dict[str, Any], control_dirs: Dict[str, Path]) -> None:
    base = base_doc["models"][0]
    outside = str(control_dirs["outside"])
    data_file = control_dirs["data"] / "images"
    data_file.mkdir()
    cases = [
        ({"calibration": {"images": outside}}, "models[0].calibration.images", "control.model_dirs"),
        # Calibration images are model inputs: a data folder will not do.
        ({"calibration": {"images": str(data_file)}}, "models[0].calibration.images", "control.model_dirs"),
        ({"source": {"type": "v4l2", "device": "/etc/shadow"}}, "models[0].source.device", "control.devices"),
        ({"source": {"type": "v4l2", "device": "/dev/../etc/shadow"}}, "models[0].source.device", "'..'"),
        ({"source": {"type": "images", "path": str(control_dirs["models"])}}, "models[0].source.path", "data_dirs"),
    ]
    for sections, key, expected in cases:
        problems = _refused(base_doc, [_with(base, **sections)])
        assert len(problems) == 1 and problems[0].startswith(key) and expected in problems[0], problems
    assert _push(base_doc, [_with(base, source={"type": "v4l2", "device": "/dev/video3"})])["models"][0]


def test_the_hardware_root_and_limits_are_local_only(base_doc: Dict[str, Any]) -> None:
    problems = _refused(base_doc, base_doc["models"], telemetry={"root": "/tmp"})
    assert problems == ["telemetry.root: set only in the local config file; a push may not change it"]
    problems = _refused(base_doc, base_doc["models"], limits={"max_models": 256})
    assert problems == ["limits: set only in the local config file; a push may not change it"]
    # A push may not open a metrics port, name a file to write, or announce the device to Home Assistant.
    problems = _refused(base_doc, base_doc["models"], metrics={"http": True, "address": "0.0.0.0"})
    assert problems == ["metrics: set only in the local config file; a push may not change it"]
    problems = _refused(base_doc, base_doc["models"], home_assistant={"discovery": True})
    assert problems == ["home_assistant: set only in the local config file; a push may not change it"]


def _builder_package(folder: Path) -> Path:
    """A package whose __init__ leaves a marker file when it is imported."""
    marker = folder / "imported.marker"
    package = folder / "evilpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (package / "net.py").write_text("def build(trt, network, weights_path):\n    return None\n")
    return marker


def test_computing_a_builders_plan_key_imports_nothing(tmp_path: Path) -> None:
    marker = _builder_package(tmp_path)
    fmt = ModelFormat(type="network-builder", builder="evilpkg.net:build", python_path=str(tmp_path))
    hashes = format_input_hashes(fmt)
    assert set(hashes) == {"builder_module", "builder_source"}
    assert not marker.exists(), "the builder's package ran while its plan key was computed"


def test_pushed_network_builders_only_signed_and_inside_the_model_dirs(
    base_doc: Dict[str, Any], control_dirs: Dict[str, Path]
) -> None:
    models = control_dirs["models"]
    marker = _builder_package(models / "code")
    builder = serving_model("built", str(models / "second.onnx"))
    builder.update(backend="tensorrt", format={"type": "network-builder", "builder": "evilpkg.net:build"})
    problems = _refused(base_doc, [base_doc["models"][0], builder])
    assert problems == [
        "models[1].format: a network builder is code that runs on this device; a push may set one only when "
        "pushes must be signed (configure control.public_keys)"
    ]
    base_doc["control"]["public_keys"] = ["A" * 43 + "="]
    config = parse_config(base_doc)
    settings = control_settings(config)
    from edged.control.confine import path_problems

    def problems_of(fmt: Dict[str, Any]) -> List[str]:
        doc = dict(config.document, models=[dict(builder, format=dict(fmt, type="network-builder"))])
        return path_problems(doc, config.document, settings)

    assert problems_of({"builder": "os:system"}) == [
        "models[0].format.python_path: required for a pushed network builder (its code is never taken from sys.path)"
    ]
    assert (
        "is outside control.model_dirs"
        in problems_of({"builder": "evilpkg.net:build", "python_path": str(control_dirs["data"])})[0]
    )
    assert problems_of({"builder": "nothere:build", "python_path": str(models / "code")}) == [
        f"models[0].format.builder: no source file for module 'nothere' under python_path {str(models / 'code')!r}"
    ]
    assert problems_of({"builder": "evilpkg.net:build", "python_path": str(models / "code")}) == []
    assert not marker.exists()
