"""The protobuf reader for model inputs agrees with the onnx package, and names a bad file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edged.backends.onnx_inputs import read_model_inputs
from edged.errors import BackendError


def _by_onnx(path: str) -> Tuple[List[Tuple[str, Optional[int], Tuple[Optional[int], ...]]], int]:
    model = onnx.load(path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        inputs.append((value.name, tensor.elem_type, dims))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return inputs, opset


def _by_reader(path: str) -> Tuple[List[Tuple[str, Optional[int], Tuple[Optional[int], ...]]], int]:
    read = read_model_inputs(path)
    return [(i.name, i.elem_type, i.shape or ()) for i in read.inputs], read.opset


def _two_input_model(path: Path, *, inits_as_inputs: bool, external: bool) -> str:
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "bias"], ["z"])]
    inputs: List[Any] = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 3]),
        helper.make_tensor_value_info("bias", TensorProto.FLOAT16, [1, 0]),
    ]
    if inits_as_inputs:  # IR < 4 listed initializers among the inputs
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4]))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("z", TensorProto.FLOAT16, None)], [w])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("com.microsoft", 1), helper.make_opsetid("", 17)]
    )
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=0)
    else:
        onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize(("inits_as_inputs", "external"), [(False, False), (True, False), (False, True)])
def test_agrees_with_onnx(tmp_path: Path, inits_as_inputs: bool, external: bool) -> None:
    path = _two_input_model(tmp_path / "m.onnx", inits_as_inputs=inits_as_inputs, external=external)
    assert _by_reader(path) == _by_onnx(path)
    assert _by_reader(path)[0][0] == ("x", TensorProto.FLOAT16, (None, 3))


def test_agrees_with_onnx_on_the_demo_model(demo_model: str) -> None:
    assert _by_reader(demo_model) == _by_onnx(demo_model)
    assert len(_by_reader(demo_model)[0]) == 1


def test_a_model_without_a_shape_or_a_tensor_type(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["b"])],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, None), helper.make_empty_tensor_value_info("s")],
        [helper.make_tensor_value_info("b", TensorProto.UINT8, None)],
    )
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph), path)
    read = read_model_inputs(path)
    assert [(i.name, i.elem_type, i.shape) for i in read.inputs] == [("a", TensorProto.UINT8, None), ("s", None, None)]


def test_a_damaged_file_is_named_and_never_crashes(tmp_path: Path, demo_model: str) -> None:
    data = Path(demo_model).read_bytes()
    path = tmp_path / "cut.onnx"
    for cut in sorted({1, 2, 7, 64, len(data) // 3, len(data) // 2, len(data) - 1}):
        path.write_bytes(data[:cut])
        try:
            read_model_inputs(str(path))
        except BackendError as exc:
            assert str(path) in str(exc) and "cannot read the ONNX model" in str(exc)
    path.write_bytes(b"")
    with pytest.raises(BackendError, match="the file is empty"):
        read_model_inputs(str(path))
    path.write_bytes(b"\x0f" * 100)  # wire type 7 does not exist
    with pytest.raises(BackendError, match="wire type 7"):
        read_model_inputs(str(path))
    with pytest.raises(BackendError, match="No such file"):
        read_model_inputs(str(tmp_path / "absent.onnx"))
