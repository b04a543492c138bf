"""Network-builder functions: content hashes, loading with edits, and the user's line on failure.

The TensorRT objects a builder receives are stood in for here by a recording network
(the TensorRT double's own tests build real networks through it)."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path
from typing import Any, List

import pytest

from edged.errors import NetworkBuilderError, PlanError
from edged.formats import ModelFormat
from edged.formats.builder import builder_hashes, call_builder, load_builder, locate_builder
from edged.formats.hashing import format_input_hashes

_COUNTER = itertools.count()

BUILDER = '''\
"""A user's builder module."""


def helper():
    return 1


def build(trt, network, weights_path):
    network.add("conv", weights_path)
    network.add("relu", None)
    return network


def broken(trt, network, weights_path):
    network.add("conv", weights_path)
    raise ValueError("layer conv: weights file has 3 values, expected 27")


def calls_into_network(trt, network, weights_path):
    network.explode()
'''


class RecordingNetwork:
    def __init__(self) -> None:
        self.layers: List[Any] = []

    def add(self, kind: str, weights: Any) -> None:
        self.layers.append((kind, weights))

    def explode(self) -> None:
        raise RuntimeError("the network refused the layer")


@pytest.fixture()
def module(tmp_path: Path) -> str:
    """A fresh, uniquely named builder module under tmp_path (sys.modules is process-wide)."""
    name = f"user_builder_{next(_COUNTER)}"
    (tmp_path / f"{name}.py").write_text(BUILDER)
    yield name
    sys.modules.pop(name, None)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_editing_one_line_of_the_builder_changes_its_hashes(tmp_path: Path, module: str) -> None:
    spec = f"{module}:build"
    before = builder_hashes(spec, str(tmp_path))
    assert set(before) == {"builder_module", "builder_source"}
    _edit(tmp_path / f"{module}.py", 'network.add("relu", None)', 'network.add("sigmoid", None)')
    after = builder_hashes(spec, str(tmp_path))
    assert after["builder_source"] != before["builder_source"]
    assert after["builder_module"] != before["builder_module"]


def test_editing_another_function_changes_only_the_module_hash(tmp_path: Path, module: str) -> None:
    spec = f"{module}:build"
    before = builder_hashes(spec, str(tmp_path))
    _edit(tmp_path / f"{module}.py", "return 1", "return 2")
    after = builder_hashes(spec, str(tmp_path))
    assert after["builder_source"] == before["builder_source"]
    assert after["builder_module"] != before["builder_module"]


def test_format_input_hashes_cover_prototxt_and_builder(tmp_path: Path, module: str) -> None:
    prototxt = tmp_path / "d.prototxt"
    prototxt.write_text('input: "data"')
    caffe = ModelFormat(type="caffe", prototxt=str(prototxt), outputs=("prob",))
    first = format_input_hashes(caffe)
    prototxt.write_text('input: "image"')
    assert set(first) == {"prototxt"} and format_input_hashes(caffe) != first
    builder = ModelFormat(type="network-builder", builder=f"{module}:build", python_path=str(tmp_path))
    assert set(format_input_hashes(builder)) == {"builder_module", "builder_source"}
    assert format_input_hashes(ModelFormat()) == {}
    with pytest.raises(PlanError, match="cannot read the prototxt"):
        format_input_hashes(ModelFormat(type="caffe", prototxt=str(tmp_path / "gone.prototxt"), outputs=("p",)))


def test_loading_picks_up_edits(tmp_path: Path, module: str) -> None:
    fn = load_builder(f"{module}:build", str(tmp_path))
    network = RecordingNetwork()
    call_builder(fn, f"{module}:build", None, network, "w.bin")
    assert network.layers == [("conv", "w.bin"), ("relu", None)]
    _edit(tmp_path / f"{module}.py", 'network.add("relu", None)', 'network.add("sigmoid", None)')
    fn = load_builder(f"{module}:build", str(tmp_path))
    network = RecordingNetwork()
    call_builder(fn, f"{module}:build", None, network, "w.bin")
    assert network.layers[-1] == ("sigmoid", None)


def test_a_raising_builder_reports_the_users_line(tmp_path: Path, module: str) -> None:
    spec = f"{module}:broken"
    fn = load_builder(spec, str(tmp_path))
    with pytest.raises(NetworkBuilderError) as info:
        call_builder(fn, spec, None, RecordingNetwork(), "w.bin", str(tmp_path))
    message = str(info.value)
    source = tmp_path / f"{module}.py"
    line = BUILDER.splitlines().index('    raise ValueError("layer conv: weights file has 3 values, expected 27")') + 1
    assert f"at {source}, line {line}: raise ValueError" in message
    assert "ValueError: layer conv: weights file has 3 values, expected 27" in message
    assert "edged/formats" not in message and "edged/formats" not in info.value.user_traceback
    assert f'File "{source}", line {line}' in info.value.user_traceback


def test_a_failure_inside_the_network_is_reported_at_the_users_call(tmp_path: Path, module: str) -> None:
    spec = f"{module}:calls_into_network"
    fn = load_builder(spec, str(tmp_path))
    with pytest.raises(NetworkBuilderError) as info:
        call_builder(fn, spec, None, RecordingNetwork(), "w.bin", str(tmp_path))
    line = BUILDER.splitlines().index("    network.explode()") + 1
    assert f"line {line}: network.explode()" in str(info.value)
    assert "the network refused the layer" in str(info.value)


def test_import_errors_and_missing_pieces_are_named(tmp_path: Path, module: str) -> None:
    with pytest.raises(NetworkBuilderError, match="no Python source file for module 'no_such_mod'"):
        locate_builder("no_such_mod:build", str(tmp_path))
    with pytest.raises(NetworkBuilderError, match="has no attribute 'nope'"):
        load_builder(f"{module}:nope", str(tmp_path))
    bad = tmp_path / f"{module}_bad.py"
    bad.write_text(textwrap.dedent("def build(trt, network, w):\n    return (\n"))
    with pytest.raises(NetworkBuilderError, match=rf"{bad}, line \d+: syntax error"):
        builder_hashes(f"{module}_bad:build", str(tmp_path))
    with pytest.raises(NetworkBuilderError, match=rf"failed to import SyntaxError.*at {bad}, line"):
        load_builder(f"{module}_bad:build", str(tmp_path))
    assert str(tmp_path) not in sys.path
