"""Front ends besides ONNX: Caffe and UFF through TensorRT 8.x's own parsers, and a user's
network-builder function that adds layers through the network API.

CaffeParser and UffParser exist in TensorRT 8.5/8.6 and are gone from 10.x on (NVIDIA's
binding tables, shared/reference/tensorrt-api); :func:`check_format` refuses such a model
by naming the installed version before anything is built. With an explicit-batch network
the Caffe parser fixes the batch dimension to 1 (it warns so itself).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from edged.backends.tensorrt.api import TrtApi, gate
from edged.backends.tensorrt.network import NetworkSource
from edged.errors import BackendError
from edged.formats.builder import call_builder, load_builder
from edged.formats.rules import format_unsupported
from edged.formats.spec import ModelFormat

__all__ = ["BuilderNetwork", "CaffeNetwork", "UffNetwork", "check_format", "format_unsupported", "network_source"]

_PARSERS = {"caffe": "CaffeParser", "uff": "UffParser"}


def check_format(api: TrtApi, fmt: ModelFormat) -> None:
    problem = format_unsupported(fmt.type, api.version_string)
    if problem is None and fmt.type in _PARSERS and getattr(api.trt, _PARSERS[fmt.type], None) is None:
        problem = f"{fmt.type} models need {_PARSERS[fmt.type]}, which this TensorRT {api.version_string} lacks"
    if problem:
        raise BackendError(problem)


class CaffeNetwork(NetworkSource):
    def __init__(self, path: str, fmt: ModelFormat) -> None:
        self.path, self.fmt = path, fmt

    def populate(self, api: TrtApi, network: Any, logger: Any, dla: bool) -> None:
        _populate_caffe(api, network, self.path, self.fmt)


@gate(max_major=8)
def _populate_caffe(api: TrtApi, network: Any, weights: str, fmt: ModelFormat) -> None:
    trt = api.trt
    caffe = trt.CaffeParser()
    blobs = caffe.parse(deploy=fmt.prototxt, model=weights, network=network, dtype=trt.DataType.FLOAT)
    if blobs is None:
        raise BackendError(f"{fmt.prototxt}: TensorRT's Caffe parser failed (see the build log)")
    for name in fmt.outputs:
        tensor = blobs.find(name)
        if tensor is None:
            raise BackendError(f"{fmt.prototxt}: no blob named {name!r} (format.outputs)")
        network.mark_output(tensor)


class UffNetwork(NetworkSource):
    implicit_batch = True

    def __init__(self, path: str, fmt: ModelFormat) -> None:
        self.path, self.fmt = path, fmt

    def populate(self, api: TrtApi, network: Any, logger: Any, dla: bool) -> None:
        _populate_uff(api, network, self.path, self.fmt)


@gate(max_major=8)
def _populate_uff(api: TrtApi, network: Any, path: str, fmt: ModelFormat) -> None:
    trt = api.trt
    uff = trt.UffParser()
    for spec in fmt.inputs:
        uff.register_input(spec.name, tuple(spec.shape), getattr(trt.UffInputOrder, spec.order.upper()))
    for name in fmt.outputs:
        uff.register_output(name)
    if not uff.parse(path, network, trt.DataType.FLOAT):
        raise BackendError(f"{path}: TensorRT's UFF parser failed (see the build log)")


class BuilderNetwork(NetworkSource):
    """``module:function(trt, network, weights_path)`` adds the layers and marks outputs."""

    def __init__(self, path: str, fmt: ModelFormat) -> None:
        self.path, self.fmt = path, fmt

    def populate(self, api: TrtApi, network: Any, logger: Any, dla: bool) -> None:
        spec = self.fmt.builder or ""
        fn = load_builder(spec, self.fmt.python_path)
        call_builder(fn, spec, api.trt, network, self.path, self.fmt.python_path)
        if network.num_outputs == 0:
            raise BackendError(f"builder {spec!r} marked no output (call network.mark_output)")


def network_source(api: TrtApi, path: str, fmt: ModelFormat) -> Optional[NetworkSource]:
    """The front end for a non-ONNX format (None: ONNX), after the version check."""
    check_format(api, fmt)
    sources: Dict[str, Callable[[str, ModelFormat], NetworkSource]] = {
        "caffe": CaffeNetwork,
        "uff": UffNetwork,
        "network-builder": BuilderNetwork,
    }
    cls = sources.get(fmt.type)
    return cls(path, fmt) if cls else None
