#!/usr/bin/env python3
"""Write edged's demo assets: a tiny deterministic CNN in ONNX, its labels and sample images.

The CNN is synthetic: its weights come from a seeded random generator, not from
training, so its "classes" mean nothing. It exists so `make run` and the tests have a
real ONNX model to run without downloading anything. Output is byte-identical across
runs for the same onnx version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

CLASSES = ["red", "green", "blue", "cyan", "magenta", "yellow", "white", "black", "stripes", "noise"]
INPUT_HW = (64, 64)


def build_model(seed: int = 7) -> object:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name: str, shape: List[int]) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        data = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        return numpy_helper.from_array(data, name)

    inits = [
        weight("conv1.w", [8, 3, 3, 3]),
        weight("conv1.b", [8]),
        weight("conv2.w", [16, 8, 3, 3]),
        weight("conv2.b", [16]),
        weight("fc.w", [len(CLASSES), 16]),
        weight("fc.b", [len(CLASSES)]),
    ]
    nodes = [
        helper.make_node(
            "Conv",
            ["images", "conv1.w", "conv1.b"],
            ["c1"],
            name="conv1",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "Conv",
            ["r1", "conv2.w", "conv2.b"],
            ["c2"],
            name="conv2",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    h, w = INPUT_HW
    graph = helper.make_graph(
        nodes,
        "edged-demo-cnn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(CLASSES)])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="edged-demo", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7  # readable by every ONNX Runtime and TensorRT edged supports
    model.doc_string = "Synthetic demo CNN with seeded random weights; not a trained model."
    onnx.checker.check_model(model)
    return model


def sample_images() -> Dict[str, np.ndarray]:
    """A few HWC uint8 RGB pictures: flat colours, stripes and seeded noise."""
    h, w = 96, 128
    images = {}
    for name, rgb in (("red", (220, 30, 30)), ("green", (30, 200, 60)), ("blue", (40, 60, 230))):
        images[name] = np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3)).copy()
    stripes = np.zeros((h, w, 3), dtype=np.uint8)
    stripes[:, ::8] = 255
    images["stripes"] = stripes
    images["noise"] = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return images


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="var/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rewrite existing files")
    args = parser.parse_args(argv)
    out = Path(args.out)
    model_path = out / "demo-cnn.onnx"
    if model_path.exists() and not args.force:
        return 0
    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    for name, pixels in sample_images().items():
        Image.fromarray(pixels).save(out / "images" / f"{name}.png")
    (out / "labels.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    tmp = model_path.with_suffix(".onnx.tmp")
    tmp.write_bytes(build_model().SerializeToString())  # type: ignore[attr-defined]
    tmp.replace(model_path)
    print(f"wrote synthetic demo model {model_path} and sample images in {out / 'images'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
