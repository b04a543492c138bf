"""Helpers for placement tests: analyse an in-memory ONNX model for a target."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("onnx")


def run_analysis(model: Any, precision: str = "fp16", trt: str = "10.3", gen: Optional[int] = 2, **kw: Any) -> Any:
    from edged.placement.analysis import analyse
    from edged.placement.graph import graph_from_model

    return analyse(graph_from_model(model), precision=precision, trt_version=trt, dla_generation=gen, **kw)


@pytest.fixture()
def analyse_model() -> Any:
    return run_analysis
