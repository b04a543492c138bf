#!/usr/bin/env python3
"""Time edged's placement: per-layer analysis of a deep synthetic network, and the
multi-model solver's exhaustive search as the number of models grows.

Usage: python3 tools/bench_placement.py [--blocks N] [--max-models M] [--repeat R]
Prints one line per measurement (median of R runs, milliseconds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def deep_net(blocks: int) -> Any:
    """A residual conv net with ``blocks`` blocks of Conv-BN-ReLU-Conv-BN-Add-ReLU at 56x56."""
    from onnx import TensorProto, helper, numpy_helper

    nodes: List[Any] = []
    inits: List[Any] = []

    def const(name: str, shape: List[int]) -> str:
        inits.append(numpy_helper.from_array(np.zeros(shape, np.float32), name))
        return name

    x = "input"
    nodes.append(
        helper.make_node("Conv", [x, const("stem.w", [64, 3, 3, 3])], ["s"], kernel_shape=[3, 3], pads=[1] * 4)
    )
    x = "s"
    for i in range(blocks):
        ones, zeros = const(f"b{i}.g", [64]), const(f"b{i}.z", [64])
        y = f"b{i}"
        nodes += [
            helper.make_node(
                "Conv", [x, const(f"{y}.w1", [64, 64, 3, 3])], [f"{y}.c1"], kernel_shape=[3, 3], pads=[1] * 4
            ),
            helper.make_node("BatchNormalization", [f"{y}.c1", ones, zeros, zeros, ones], [f"{y}.n1"]),
            helper.make_node("Relu", [f"{y}.n1"], [f"{y}.r1"]),
            helper.make_node(
                "Conv", [f"{y}.r1", const(f"{y}.w2", [64, 64, 3, 3])], [f"{y}.c2"], kernel_shape=[3, 3], pads=[1] * 4
            ),
            helper.make_node("Add", [f"{y}.c2", x], [f"{y}.a"]),
            helper.make_node("Relu", [f"{y}.a"], [f"{y}.out"]),
        ]
        x = f"{y}.out"
    graph = helper.make_graph(
        nodes,
        "deep",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 56, 56])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=50, help="residual blocks (6 nodes each)")
    parser.add_argument("--max-models", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from edged.placement.analysis import analyse
    from edged.placement.graph import graph_from_model
    from edged.placement.profiles import Profile
    from edged.placement.solver import SEARCH_LIMIT, Request, place

    model = deep_net(args.blocks)
    nodes = len(model.graph.node)
    graph_ms = median_ms(lambda: graph_from_model(model), args.repeat)
    graph = graph_from_model(model)
    analyse_ms = median_ms(lambda: analyse(graph, precision="fp16", trt_version="10.3", dla_generation=2), args.repeat)
    print(f"read + shape inference, {nodes} nodes: {graph_ms:.1f} ms")
    print(f"analysis (rules, pieces, verdict), {nodes} nodes: {analyse_ms:.1f} ms")

    devices = ["dla0", "dla1", "gpu"]
    for count in range(1, args.max_models + 1):
        reqs = []
        for i in range(count):
            profs = {
                d: Profile(f"m{i}", d, 3.0 + i if d != "gpu" else 1.5 + i / 2, 2000.0 if d != "gpu" else 15000.0)
                for d in devices
            }
            reqs.append(Request(f"m{i}", profs, 20.0))
        combos = 4**count
        mode = "exhaustive" if combos <= SEARCH_LIMIT else "greedy"
        ms = median_ms(lambda reqs=reqs: place(reqs, devices), args.repeat)
        print(f"solver, {count} models on {len(devices)} devices ({combos} combinations, {mode}): {ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
