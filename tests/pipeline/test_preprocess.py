from __future__ import annotations

import numpy as np
import pytest

from edged.backends.base import TensorSpec
from edged.config import parse_config
from edged.errors import ConfigError
from edged.pipeline.preprocess import Preprocessor, resize


def _config(**preprocess: object):  # type: ignore[no-untyped-def]
    doc = {"device": {"id": "d"}, "models": [{"name": "m", "path": "/m", "preprocess": preprocess}]}
    return parse_config(doc).models[0].preprocess


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_normalisation_equals_the_textbook_formula(layout: str, color: str) -> None:
    mean, std, scale = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 1 / 255
    config = _config(size=[32, 48], mean=mean, std=std, layout=layout, color=color)
    shape = (None, 3, 32, 48) if layout == "nchw" else (None, 32, 48, 3)
    pre = Preprocessor(config, TensorSpec("x", shape, "float32"))
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    rgb = image[:, :, ::-1] if color == "rgb" else image
    gain = np.float32(scale) / np.asarray(std, np.float32)
    offset = -np.asarray(mean, np.float32) / np.asarray(std, np.float32)
    expected = rgb.astype(np.float32) * gain + offset
    if layout == "nchw":
        expected = expected.transpose(2, 0, 1)
    got = pre(image)
    assert got.shape == pre.sample_shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_uint8_input_only_reorders_channels() -> None:
    pre = Preprocessor(_config(size=[4, 4], dtype="uint8"), TensorSpec("x", (1, 3, 4, 4), "uint8"))
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    np.testing.assert_array_equal(pre(image), image[:, :, ::-1].transpose(2, 0, 1))


def test_size_comes_from_the_model_when_not_configured() -> None:
    pre = Preprocessor(_config(), TensorSpec("x", (None, 3, 20, 30), "float32"))
    assert pre.hw == (20, 30)
    with pytest.raises(ConfigError, match="dynamic height/width"):
        Preprocessor(_config(), TensorSpec("x", (None, 3, None, None), "float32"))


def test_bilinear_resize_keeps_flat_images_flat_and_hits_the_size() -> None:
    flat = np.full((37, 53, 3), 91, dtype=np.uint8)
    out = resize(flat, (64, 80))
    assert out.shape == (64, 80, 3) and np.all(out == 91)
    ramp = np.tile(np.linspace(0, 255, 100).astype(np.uint8)[None, :, None], (10, 1, 3))
    small = resize(ramp, (10, 25)).astype(int)
    assert np.all(np.diff(small[0, :, 0]) >= 0)  # monotone ramp stays monotone


def test_float16_tensors_hold_the_rounded_float32_values() -> None:
    config = _config(size=[8, 8], dtype="float16", mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])
    pre = Preprocessor(config, TensorSpec("x", (None, 3, 8, 8), "float16"))
    image = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    full = Preprocessor(
        _config(size=[8, 8], mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0]), TensorSpec("x", (None, 3, 8, 8), "float32")
    )
    got = pre(image)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, full(image).astype(np.float16))
