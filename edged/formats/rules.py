"""Cross-field checks of model formats: a format paired with a backend that cannot read it
is a configuration error, found at check time rather than after a failed build."""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence

from edged.formats.spec import DEFAULT_BACKEND, FORMAT_BACKENDS

__all__ = ["format_problems"]


def _why_not(fmt: str, backend: str) -> str:
    if fmt == "uff":
        return (
            "UFF models are read only by TensorRT 8.x's UffParser; there is no CPU road for them "
            "(convert the TensorFlow model to ONNX to run it on the CPU)"
        )
    if fmt == "network-builder":
        return "a network builder adds layers through TensorRT's API, so it runs only with backend tensorrt"
    choices = " or ".join(FORMAT_BACKENDS[fmt])
    return f"{fmt} models are read by backend {choices}"


def format_problems(models: Sequence[Any], defaults: Mapping[str, Any]) -> List[str]:
    """One message per model whose format its (effective) backend cannot read."""
    problems = []
    for index, model in enumerate(models):
        if not isinstance(model, dict) or not isinstance(model.get("format"), dict):
            continue
        fmt = model["format"].get("type")
        if fmt not in FORMAT_BACKENDS:
            continue
        if "backend" in model:
            backend, where = model["backend"], f"models[{index}].backend"
        elif "backend" in defaults:
            backend, where = defaults["backend"], "device.defaults.backend"
        else:
            backend, where = DEFAULT_BACKEND[fmt], ""
        if backend in FORMAT_BACKENDS[fmt]:
            continue
        via = f" (from {where})" if where.startswith("device") else ""
        problems.append(
            f"models[{index}].format.type: backend {backend!r}{via} cannot read {fmt} models: {_why_not(fmt, backend)}"
        )
    return problems
