"""FP16 and Q/DQ INT8 conversion with ONNX Runtime's tools, through the ONNX Runtime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.backends.base import BuildOptions
from edged.backends.calibration import CalibrationSet
from edged.backends.onnxruntime.backend import OnnxRuntimeBackend
from edged.backends.onnxruntime.precision import convert_model
from edged.errors import BackendError


def _run(model: str, options: BuildOptions, x: np.ndarray) -> np.ndarray:
    backend = OnnxRuntimeBackend()
    runner = backend.load_plan(backend.build_plan(model, options).plan, options)
    return runner.infer({"images": x})["logits"]


@pytest.fixture()
def images_batch(demo_assets: Path) -> np.ndarray:
    from edged.backends.base import TensorSpec

    calib = CalibrationSet(str(demo_assets / "images"), {"size": [64, 64]})
    return next(calib.batches(TensorSpec("images", (None, 3, 64, 64), "float32"), 4))


def test_fp16_and_int8_run_on_onnxruntime_close_to_fp32(
    demo_model: str, demo_assets: Path, images_batch: np.ndarray
) -> None:
    ref = _run(demo_model, BuildOptions(), images_batch)
    half = _run(demo_model, BuildOptions(precision="fp16"), images_batch)
    assert half.dtype == np.float32  # inputs and outputs stay float32 for ONNX Runtime
    np.testing.assert_allclose(half, ref, atol=5e-3)
    extra = {"calibration_images": str(demo_assets / "images"), "preprocess": {"size": [64, 64]}}
    quant = _run(demo_model, BuildOptions(precision="int8", extra=extra), images_batch)
    assert not np.array_equal(quant, ref)  # really quantised...
    scale = float(np.abs(ref).max())
    assert float(np.abs(quant - ref).max()) < 0.1 * scale  # ...and still the same function


def test_qdq_model_has_symmetric_int8_quantisation(demo_model: str, demo_assets: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    calib = CalibrationSet(str(demo_assets / "images"), {"size": [64, 64]})
    path = convert_model(demo_model, "int8", str(tmp_path), calib)
    model = onnx.load(path)
    ops = [node.op_type for node in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(zp.dtype == np.int8 and not zp.any() for zp in zero_points)  # TensorRT needs zero 0


def test_int8_needs_calibration_images(demo_model: str, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"calibration.images: precision int8 needs"):
        OnnxRuntimeBackend().build_plan(demo_model, BuildOptions(precision="int8"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match=r"no JPEG/PNG images in"):
        OnnxRuntimeBackend().build_plan(
            demo_model, BuildOptions(precision="int8", extra={"calibration_images": str(tmp_path / "empty")})
        )
