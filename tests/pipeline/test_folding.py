"""Preprocessing folded into the plan: the prefix computes what the host path computes
(real ONNX Runtime), the decision says why when it is off, and the pipeline serves folded plans."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

from edged.backends.base import BuildOptions, Runner
from edged.backends.input_prefix import FRAME_INPUT, InputPrefix
from edged.backends.onnxruntime.backend import OnnxRuntimeBackend
from edged.config import parse_config
from edged.config.model import ModelConfig
from edged.errors import BackendError
from edged.pipeline.folding import decide_folding
from edged.pipeline.model_pipeline import ModelPipeline
from edged.pipeline.preprocess import Preprocessor


def identity_model(path: Path, shape: List[Any], dtype: str = "float32", opset: int = 13) -> str:
    """A model whose output is its input: the plan's output is then the preprocessed tensor."""
    import onnx
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "uint8": TensorProto.UINT8}[dtype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"], name="same")],
        "identity",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def model_config(path: str, **preprocess: Any) -> ModelConfig:
    doc = {"device": {"id": "t"}, "models": [{"name": "m", "path": path, "preprocess": preprocess}]}
    return parse_config(doc).models[0]


def load(path: str, prefix: Optional[InputPrefix]) -> Runner:
    ort = OnnxRuntimeBackend()
    options = BuildOptions(threads=1, input_prefix=prefix)
    return ort.load_plan(ort.build_plan(path, options).plan, options)


def run_both(
    model: ModelConfig, frames: List[np.ndarray], uint8_first: bool = True
) -> Tuple[np.ndarray, np.ndarray, Runner]:
    """(host path output, folded plan output, folded runner) for the same frames; with
    ``uint8_first`` False, the prefix in the order TensorRT plans get (cast first)."""
    decision = decide_folding(model, "onnxruntime", "1.0")
    assert decision.prefix is not None, decision.reason
    assert decision.prefix.uint8_first, "ONNX Runtime plans reorder the uint8 frame before the cast"
    prefix = dataclasses.replace(decision.prefix, uint8_first=uint8_first)
    host, folded = load(model.path, None), load(model.path, prefix)
    host_pre = Preprocessor(model.preprocess, host.inputs[0])
    fold_pre = Preprocessor(model.preprocess, folded.inputs[0])
    assert fold_pre.folded and not host_pre.folded
    want = host.infer({"x": np.stack([host_pre(f) for f in frames])})["y"]
    got = folded.infer({FRAME_INPUT: np.stack([fold_pre(f) for f in frames])})["y"]
    return want, got, folded


MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


@pytest.mark.parametrize("hw", [(224, 224), (17, 31), (48, 64)])
@pytest.mark.parametrize("color", ["rgb", "bgr"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("uint8_first", [True, False], ids=["uint8-first", "cast-first"])
def test_folded_plan_equals_the_host_path(
    tmp_path: Path, hw: Tuple[int, int], color: str, layout: str, uint8_first: bool
) -> None:
    h, w = hw
    shape = ["N", 3, h, w] if layout == "nchw" else ["N", h, w, 3]
    model = model_config(identity_model(tmp_path / "id.onnx", shape), color=color, layout=layout, mean=MEAN, std=STD)
    rng = np.random.default_rng(h * w)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]
    want, got, folded = run_both(model, frames, uint8_first)
    assert folded.inputs[0].shape == (None, h, w, 3) and folded.inputs[0].dtype == "uint8"
    assert got.dtype == np.float32 and got.shape == want.shape
    # The same float32 constants and operations: equal within one unit in the last place.
    np.testing.assert_array_max_ulp(got, want, maxulp=1)
    # A channel order or layout mix-up would be far off: BGR and RGB differ by whole levels.
    assert not np.allclose(got, want[:, ::-1] if layout == "nchw" else want[..., ::-1])


def test_folded_float16_input_equals_the_host_path(tmp_path: Path) -> None:
    model = model_config(identity_model(tmp_path / "id16.onnx", ["N", 3, 20, 30], "float16"), mean=MEAN, std=STD)
    frames = [np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)]
    want, got, _ = run_both(model, frames)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("frame_hw", [(120, 160), (31, 45)])
def test_folded_resize_is_within_one_grey_level(tmp_path: Path, method: str, frame_hw: Tuple[int, int]) -> None:
    path = identity_model(tmp_path / "id.onnx", ["N", 3, 40, 56])
    doc = {
        "device": {"id": "t"},
        "models": [
            {
                "name": "m",
                "path": path,
                "source": {"type": "synthetic", "size": list(frame_hw)},
                "preprocess": {"size": [40, 56], "resize": method, "fold_resize": True, "mean": MEAN, "std": STD},
            }
        ],
    }
    model = parse_config(doc).models[0]
    decision = decide_folding(model, "onnxruntime", "1.0")
    assert decision.prefix is not None and decision.prefix.resizes, decision.reason
    frames = [np.random.default_rng(5).integers(0, 256, (*frame_hw, 3), dtype=np.uint8) for _ in range(2)]
    want, got, folded = run_both(model, frames)
    assert folded.inputs[0].shape == (None, *frame_hw, 3)
    # The host resizes with OpenCV's fixed-point arithmetic, ONNX Runtime in floats; both
    # round to uint8, so a value may differ by one grey level (gain = 1 / (255 * std)).
    one_level = 1.0 / (255.0 * min(STD)) + 1e-6
    assert np.abs(got - want).max() <= one_level
    if method == "nearest":
        np.testing.assert_array_max_ulp(got, want, maxulp=1)


def test_folding_reasons_when_off(tmp_path: Path, demo_assets: Path) -> None:
    demo = str(demo_assets / "demo-cnn.onnx")
    assert decide_folding(model_config(demo, fold=False), "onnxruntime", "1.0").reason == "preprocess.fold is false"
    assert "8.6" in decide_folding(model_config(demo), "tensorrt", "8.5.2").reason
    assert decide_folding(model_config(demo), "tensorrt", "8.6.1").prefix is not None
    assert "opencv" in decide_folding(model_config(demo), "opencv", "4.9").reason
    int_model = identity_model(tmp_path / "u8.onnx", ["N", 3, 8, 8], "uint8")
    off = decide_folding(model_config(int_model), "onnxruntime", "1.0")
    assert off.prefix is None and "uint8" in off.reason and "on the host" in off.describe()
    flat = identity_model(tmp_path / "flat.onnx", ["N", 10])
    assert "not a 3-channel image" in decide_folding(model_config(flat, size=[8, 8]), "onnxruntime", "1.0").reason
    resize = decide_folding(model_config(demo, fold_resize=True), "onnxruntime", "1.0")
    assert resize.prefix is not None and not resize.prefix.resizes and "needs preprocess.size" in resize.reason


def test_prefix_refuses_a_model_that_uses_its_names(tmp_path: Path) -> None:
    import onnx

    path = identity_model(tmp_path / "id.onnx", ["N", 3, 8, 8])
    model = onnx.load(path)
    model.graph.node[0].name = "edged_pre/mine"
    onnx.save(model, path)
    prefix = InputPrefix("rgb", "nchw", 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (8, 8))
    with pytest.raises(BackendError, match=r"already uses the name"):
        prefix.apply(path, str(tmp_path))


def _run_pipeline(model: ModelConfig, runner: Runner, out: Path) -> List[Dict[str, Any]]:
    return _run_pipeline_started(ModelPipeline(model, runner), out)


def _run_pipeline_started(pipeline: ModelPipeline, out: Path) -> List[Dict[str, Any]]:
    import json

    pipeline.start()
    assert pipeline.wait(30)
    pipeline.stop()
    return [json.loads(line) for line in out.read_text().splitlines()]


def _demo_model(
    demo_assets: Path, out: Path, batch: int, source: Dict[str, Any], preprocess: Dict[str, Any]
) -> ModelConfig:
    entry = {
        "name": "m",
        "path": str(demo_assets / "demo-cnn.onnx"),
        "batch": batch,
        "source": source,
        "preprocess": preprocess,
        "postprocess": {"type": "raw"},
        "sink": {"type": "jsonl", "path": str(out)},
    }
    return parse_config({"device": {"id": "t"}, "models": [entry]}).models[0]


def test_pipeline_serves_a_folded_plan_with_the_same_results(tmp_path: Path, demo_assets: Path) -> None:
    results = {}
    for fold in (False, True):
        out = tmp_path / f"fold-{fold}.jsonl"
        images = {"type": "images", "path": str(demo_assets / "images"), "loop": False}
        model = _demo_model(demo_assets, out, 4, images, {"mean": MEAN, "std": STD, "fold": fold})
        decision = decide_folding(model, "onnxruntime", "1.0")
        assert (decision.prefix is not None) is fold
        runner = load(model.path, decision.prefix)
        assert (runner.inputs[0].name == FRAME_INPUT) is fold
        results[fold] = {r["origin"]: r["outputs"] for r in _run_pipeline(model, runner, out)}
    assert results[True].keys() == results[False].keys() and results[True]
    for origin, outputs in results[False].items():
        for name, value in outputs.items():
            np.testing.assert_allclose(results[True][origin][name], value, rtol=1e-5, atol=1e-5)


def test_preprocess_config_defaults_fold_on() -> None:
    model = model_config("m.onnx")
    assert model.preprocess.fold is True and model.preprocess.fold_resize is False
    assert dataclasses.replace(model.preprocess, fold=False).fold is False


def test_tensorrt_int8_before_11_keeps_host_preprocessing(demo_assets: Path) -> None:
    demo = model_config(str(demo_assets / "demo-cnn.onnx"))
    assert "calibrates" in decide_folding(demo, "tensorrt", "10.3.0", "int8").reason
    assert decide_folding(demo, "tensorrt", "11.1.0", "int8").prefix is not None
    assert decide_folding(demo, "onnxruntime", "1.0", "int8").prefix is not None


def test_the_prefix_order_follows_the_engine_and_is_in_the_key(tmp_path: Path) -> None:
    import onnx

    path = identity_model(tmp_path / "id.onnx", ["N", 3, 8, 8])
    model = model_config(path, mean=MEAN, std=STD)
    on_cpu = decide_folding(model, "onnxruntime", "1.0").prefix
    on_gpu = decide_folding(model, "tensorrt", "10.3.0").prefix
    assert on_cpu is not None and on_gpu is not None
    assert on_cpu.uint8_first and not on_gpu.uint8_first
    assert on_cpu.key_document() != on_gpu.key_document()

    def ops(prefix: InputPrefix) -> List[str]:
        written = onnx.load(prefix.apply(path, str(tmp_path)))
        return [n.op_type for n in written.graph.node if n.name.startswith("edged_pre/")]

    # ONNX Runtime moves uint8 bytes, then normalises in one pass; TensorRT's uint8 input feeds a cast.
    assert ops(on_cpu) == ["Transpose", "Gather", "Cast", "BatchNormalization"]
    assert ops(on_gpu) == ["Cast", "Transpose", "Gather", "Mul", "Add"]


def test_without_the_onnx_package_the_host_preprocesses_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    model = model_config(identity_model(tmp_path / "id.onnx", ["N", 3, 8, 8]), mean=MEAN, std=STD)
    decision = decide_folding(model, "tensorrt", "10.3.0")
    assert decision.prefix is None and "needs the onnx package" in decision.describe()


def test_deciding_reads_the_model_without_importing_onnx(tmp_path: Path) -> None:
    """A warm start (plan cached) decides again; the onnx package costs ~11 MB of resident memory."""
    import subprocess
    import sys
    import textwrap

    path = identity_model(tmp_path / "id.onnx", ["N", 3, 8, 8])
    script = textwrap.dedent(
        f"""
        import sys
        from edged.config import parse_config
        from edged.pipeline.folding import decide_folding
        doc = {{"device": {{"id": "t"}}, "models": [{{"name": "m", "path": {path!r}}}]}}
        assert decide_folding(parse_config(doc).models[0], "onnxruntime", "1.0").prefix is not None
        print(sorted(m for m in sys.modules if m == "onnx" or m.startswith("onnx.")))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class _Inputs(Runner):
    """The real runner, keeping a copy of each call's input and whether it lay in one of
    ``frames`` (the source's own images)."""

    def __init__(self, inner: Runner) -> None:
        super().__init__()
        self._inner = inner
        self.inputs, self.outputs = inner.inputs, inner.outputs
        self.frames: List[np.ndarray] = []
        self.seen: List[np.ndarray] = []
        self.uncopied: List[bool] = []

    def _infer_impl(self, feeds: Any) -> Dict[str, np.ndarray]:
        (batch,) = feeds.values()
        self.seen.append(batch.copy())
        self.uncopied.append(any(np.shares_memory(batch, frame) for frame in self.frames))
        return self._inner.infer(feeds)


@pytest.mark.parametrize("size", [[64, 64], [48, 80]], ids=["at-the-plan-size", "resized"])
def test_a_folded_plan_reads_a_frame_at_its_size_where_the_source_left_it(
    tmp_path: Path, demo_assets: Path, size: List[int]
) -> None:
    out = tmp_path / "out.jsonl"
    synthetic = {"type": "synthetic", "fps": 0, "count": 20, "size": size}
    model = _demo_model(demo_assets, out, 1, synthetic, {"mean": MEAN, "std": STD, "size": [64, 64]})
    decision = decide_folding(model, "onnxruntime", "1.0")
    runner = _Inputs(load(model.path, decision.prefix))
    assert runner.inputs[0].name == FRAME_INPUT and runner.inputs[0].shape[1:3] == (64, 64)
    pipeline = ModelPipeline(model, runner)
    ring = runner.frames = pipeline.source._frames  # type: ignore[attr-defined]  # the synthetic source's
    records = _run_pipeline_started(pipeline, out)
    assert len(records) == 20 and runner.uncopied == [size == [64, 64]] * 20
    # Either way the engine saw the frame's pixels (resized where they had to be).
    for record, batch in zip(records, runner.seen):
        expected = pipeline.preprocess(ring[record["seq"] % len(ring)])
        assert np.array_equal(batch[0], expected)
