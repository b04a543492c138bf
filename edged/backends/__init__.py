"""Inference backends behind one interface, looked up by the config's backend name."""

from __future__ import annotations

import importlib
from typing import Dict, List

from edged.backends.base import Backend, BuildOptions, BuiltPlan, InferTimings, Runner, TensorSpec
from edged.errors import BackendUnavailable, ConfigError

__all__ = [
    "Backend",
    "BuildOptions",
    "BuiltPlan",
    "InferTimings",
    "Runner",
    "TensorSpec",
    "REGISTRY",
    "get_backend",
    "available_backends",
]

# Config name -> "module:class". Modules are imported only when asked for, so a missing
# optional library is a named capability gap, never an ImportError at start-up.
REGISTRY: Dict[str, str] = {
    "onnxruntime": "edged.backends.onnxruntime.backend:OnnxRuntimeBackend",
    "opencv": "edged.backends.opencv.backend:OpenCvBackend",
    "tensorrt": "edged.backends.tensorrt.backend:TensorRTBackend",
}


def get_backend(name: str) -> Backend:
    """Instantiate the backend registered under ``name``.

    Raises BackendUnavailable (naming what to install) when its library is missing.
    """
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ConfigError(f"backend {name!r} is not one of {', '.join(sorted(REGISTRY))}") from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    backend: Backend = getattr(module, class_name)()
    return backend


def available_backends() -> List[Dict[str, str]]:
    """Each registered backend with its version, or the reason it cannot run here."""
    report = []
    for name in sorted(REGISTRY):
        try:
            backend = get_backend(name)
            report.append({"name": name, "available": "yes", "version": backend.version()})
        except BackendUnavailable as exc:
            report.append({"name": name, "available": "no", "reason": str(exc)})
    return report
