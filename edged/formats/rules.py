"""Cross-field checks of model formats: a format paired with a backend that cannot read it
is a configuration error, found at check time rather than after a failed build."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

from edged.formats.spec import DEFAULT_BACKEND, FORMAT_BACKENDS
from edged.trt_releases import LEGACY_PARSERS_TEXT, has_legacy_parsers

__all__ = ["format_problems", "format_unsupported", "installed_problems", "installed_tensorrt"]

_PARSERS = {"caffe": "CaffeParser", "uff": "UffParser"}


def format_unsupported(fmt: str, tensorrt_version: str) -> Optional[str]:
    """Why TensorRT ``tensorrt_version`` cannot build ``fmt`` models, or None when it can."""
    if fmt not in _PARSERS or has_legacy_parsers(tensorrt_version):
        return None
    return (
        f"{fmt} models need {_PARSERS[fmt]}, which TensorRT {tensorrt_version} no longer has ({LEGACY_PARSERS_TEXT}); "
        "convert the model to ONNX, or serve it on a host with TensorRT 8.5 or 8.6"
    )


def installed_tensorrt() -> Optional[str]:
    """The version of the TensorRT Python module installed here, or None."""
    try:
        import tensorrt
    except ImportError:
        return None
    return str(getattr(tensorrt, "__version__", "")) or None


def installed_problems(models: Sequence[Any], tensorrt_version: Optional[str]) -> List[str]:
    """Models with backend tensorrt whose format the installed TensorRT cannot build:
    found when the config is checked on the device, not after a build has started."""
    if not tensorrt_version:
        return []
    problems = []
    for index, model in enumerate(models):
        if model.backend != "tensorrt":
            continue
        why = format_unsupported(model.format.type, tensorrt_version)
        if why:
            problems.append(f"models[{index}].format.type: {why}")
    return problems


def _why_not(fmt: str, backend: str) -> str:
    if fmt == "uff":
        return (
            "UFF models are read only by TensorRT 8.5/8.6's UffParser; there is no CPU road for them "
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
