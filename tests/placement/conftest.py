"""Helpers for placement tests: analyse an in-memory ONNX model for a target."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

pytest.importorskip("onnx")


def run_analysis(model: Any, precision: str = "fp16", trt: str = "10.3", gen: Optional[int] = 2, **kw: Any) -> Any:
    from edged.placement.analysis import analyse
    from edged.placement.graph import graph_from_model

    return analyse(graph_from_model(model), precision=precision, trt_version=trt, dla_generation=gen, **kw)


@pytest.fixture()
def analyse_model() -> Any:
    return run_analysis


@pytest.fixture(autouse=True)
def fixed_benchmark(monkeypatch: pytest.MonkeyPatch) -> List[int]:
    """Plans here run on test doubles (ONNX Runtime on this CPU), whose speed says nothing
    about a DLA or a GPU: the daemon's post-load benchmark reports a fixed 0.1 ms, so what
    placement decides from it does not depend on the machine running the tests. Returns the
    batch of each benchmark taken."""
    batches: List[int] = []

    def measure(runner: Any, batch: int, **kwargs: Any) -> Dict[str, Any]:
        batches.append(batch)
        return {"samples_ms": [0.1]}

    monkeypatch.setattr("edged.bench.measure", measure)
    return batches
