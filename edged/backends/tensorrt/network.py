"""Network sources: what fills a TensorRT network definition before the build.

The build path only sees a NetworkSource, so other front ends (Caffe/UFF parsers on 8.x, a
Python callable that adds layers with the network API) plug in beside OnnxNetwork.
"""

from __future__ import annotations

import abc
import hashlib
from typing import Any, List, Optional

from edged.backends.tensorrt.api import TrtApi
from edged.errors import BackendError

__all__ = ["NetworkSource", "OnnxNetwork", "create_network"]


def create_network(api: TrtApi, builder: Any) -> Any:
    """An explicit-batch network on every supported version.

    8.x needs the EXPLICIT_BATCH flag (its ONNX parser refuses implicit batch); 10.x ignores
    it; 11.x removed the member and every network is explicit-batch and strongly typed.
    """
    flag = getattr(api.trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return builder.create_network(0 if flag is None else 1 << int(flag))


class NetworkSource(abc.ABC):
    """Fills ``network``; raises BackendError naming what in the model is wrong."""

    path: str

    @abc.abstractmethod
    def populate(self, api: TrtApi, network: Any, logger: Any, dla: bool) -> None: ...

    def digest(self) -> str:
        with open(self.path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()


def _onnx_node_names(path: str) -> Optional[List[str]]:
    """Node names by index, for 8.x parser errors that give only an index (onnx is optional)."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:  # an unreadable model already produced a parser error of its own
        return None
    return [node.name or f"{node.op_type}#{i}" for i, node in enumerate(model.graph.node)]


class OnnxNetwork(NetworkSource):
    def __init__(self, path: str) -> None:
        self.path = path

    def populate(self, api: TrtApi, network: Any, logger: Any, dla: bool) -> None:
        trt = api.trt
        parser = trt.OnnxParser(network, logger)
        # TensorRT >= 10.16 / 11.x parsers can report per-node DLA support; older ones lack the member.
        report_dla = getattr(getattr(trt, "OnnxParserFlag", None), "REPORT_CAPABILITY_DLA", None)
        if dla and report_dla is not None and api.major >= 10:
            parser.set_flag(report_dla)
        # parse_from_file resolves external weight files relative to the model.
        if parser.parse_from_file(self.path):
            return
        names = None
        problems = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            node = error.node()
            if hasattr(error, "node_name"):  # 10.x and newer name the node themselves
                label = error.node_name() or f"node #{node}"
            else:
                names = names if names is not None else _onnx_node_names(self.path) or []
                label = names[node] if 0 <= node < len(names) else f"node #{node}"
            problems.append(f"{label}: {error.desc()}")
        raise BackendError(f"{self.path}: TensorRT's ONNX parser failed: " + "; ".join(problems or ["unknown error"]))
