"""OpenCV dnn backend for Caffe models on the CPU.

OpenCV cannot serialise a prepared network, so its "plan" is the prototxt and the
weights packed together with the output names: loading it needs no other file, and it
is cached and keyed like any other plan. Loading runs one warm-up pass on zeros, which
also tells the output shapes (Caffe files do not declare them).
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from edged.backends.base import Backend, BuildOptions, BuiltPlan, ProgressCallback, Runner, TensorSpec
from edged.errors import BackendError, BackendUnavailable, PlanError
from edged.formats.prototxt import caffe_inputs

__all__ = ["OpenCvBackend", "OpenCvRunner", "pack_plan", "unpack_plan"]

_MAGIC = b"EDGEDCV1"
_HEADER = struct.Struct("<8sI")


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise BackendUnavailable(
            "backend 'opencv' needs OpenCV's Python bindings: apt install python3-opencv "
            "(or pip install opencv-python-headless)"
        ) from exc
    return cv2


def pack_plan(prototxt: bytes, weights: bytes, outputs: Sequence[str]) -> bytes:
    header = json.dumps({"outputs": list(outputs), "prototxt_bytes": len(prototxt)}).encode("utf-8")
    return _HEADER.pack(_MAGIC, len(header)) + header + prototxt + weights


def unpack_plan(plan: bytes) -> Tuple[bytes, bytes, List[str]]:
    if len(plan) < _HEADER.size or plan[: len(_MAGIC)] != _MAGIC:
        raise PlanError("not an OpenCV Caffe plan written by edged")
    _, size = _HEADER.unpack_from(plan)
    start = _HEADER.size + size
    try:
        header = json.loads(plan[_HEADER.size : start].decode("utf-8"))
        split = start + int(header["prototxt_bytes"])
        outputs = [str(name) for name in header["outputs"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"OpenCV plan header is damaged: {exc}") from exc
    if split > len(plan):
        raise PlanError("OpenCV plan is truncated")
    return plan[start:split], plan[split:], outputs


def _read(path: str, role: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise BackendError(f"{path}: cannot read the {role}: {exc.strerror}") from exc


class OpenCvRunner(Runner):
    def __init__(self, net: Any, inputs: List[Tuple[str, Tuple[int, ...]]], outputs: List[str]) -> None:
        super().__init__()
        self._net = net
        self._output_names = outputs
        # OpenCV reshapes the network to each input blob, so the batch is free.
        self.inputs = [TensorSpec(name, (None, *shape[1:]), "float32") for name, shape in inputs]
        warm = self._run({name: np.zeros((1, *shape[1:]), np.float32) for name, shape in inputs})
        self.outputs = [TensorSpec(name, (None, *warm[name].shape[1:]), "float32") for name in outputs]

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for name, value in feeds.items():
            self._net.setInput(np.ascontiguousarray(value, dtype=np.float32), name)
        values = self._net.forward(self._output_names)
        return {name: np.asarray(value) for name, value in zip(self._output_names, values)}

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        start = time.perf_counter()
        result = self._run({spec.name: feeds[spec.name] for spec in self.inputs})
        self.last_timings.compute_ms = (time.perf_counter() - start) * 1000.0
        return result

    def _close_impl(self) -> None:
        self._net = None


class OpenCvBackend(Backend):
    name = "opencv"

    def __init__(self) -> None:
        self._cv2 = _import_cv2()

    def version(self) -> str:
        return str(self._cv2.__version__)

    def _check(self, options: BuildOptions) -> None:
        if options.model_format.type != "caffe":
            raise BackendError(f"backend opencv reads caffe models, not {options.model_format.type}")
        if options.device not in ("cpu", "auto"):
            raise BackendError(f"backend opencv runs on the CPU, not on {options.device!r}")
        if options.precision != "fp32":
            raise BackendError(f"backend opencv serves fp32 Caffe models, not {options.precision}")

    def _net(self, prototxt: bytes, weights: bytes) -> Any:
        dnn = self._cv2.dnn
        try:
            net = dnn.readNetFromCaffe(np.frombuffer(prototxt, np.uint8), np.frombuffer(weights, np.uint8))
        except self._cv2.error as exc:
            raise BackendError(f"OpenCV cannot read the Caffe model: {str(exc).strip()}") from exc
        if net.empty():
            raise BackendError("OpenCV read an empty Caffe network")
        net.setPreferableBackend(dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(dnn.DNN_TARGET_CPU)
        return net

    def _runner(self, prototxt: bytes, weights: bytes, outputs: List[str], source: str) -> OpenCvRunner:
        inputs = caffe_inputs(prototxt.decode("utf-8", errors="replace"), source)
        net = self._net(prototxt, weights)
        known = set(net.getLayerNames()) | {name for name, _ in inputs}
        unknown = [name for name in outputs if name not in known]
        if unknown:
            raise BackendError(f"{source}: no blob named {', '.join(unknown)} (format.outputs)")
        try:
            return OpenCvRunner(net, inputs, outputs)
        except self._cv2.error as exc:
            raise BackendError(f"{source}: OpenCV cannot run the Caffe model: {str(exc).strip()}") from exc

    def build_plan(
        self, model_path: str, options: BuildOptions, progress: Optional[ProgressCallback] = None
    ) -> BuiltPlan:
        self._check(options)
        fmt = options.model_format
        if not fmt.prototxt:
            raise BackendError(f"{model_path}: a caffe model needs format.prototxt")
        prototxt = _read(fmt.prototxt, "prototxt")
        weights = _read(model_path, "Caffe weights")
        if progress:
            progress(None, "reading")
        # Read and run it once now, so a broken model fails the build rather than the load.
        self._runner(prototxt, weights, list(fmt.outputs), fmt.prototxt).close()
        if progress:
            progress(1.0, "done")
        return BuiltPlan(
            plan=pack_plan(prototxt, weights, fmt.outputs), build_log=[f"read with OpenCV dnn {self.version()}"]
        )

    def load_plan(self, plan: bytes, options: BuildOptions) -> Runner:
        prototxt, weights, outputs = unpack_plan(plan)
        try:
            return self._runner(prototxt, weights, outputs, "plan")
        except BackendError as exc:
            raise PlanError(str(exc)) from exc
