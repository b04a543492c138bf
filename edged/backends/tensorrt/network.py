"""Network sources: what fills a TensorRT network definition before the build.

The build path only sees a NetworkSource, so other front ends (Caffe/UFF parsers on 8.x, a
Python callable that adds layers with the network API) plug in beside OnnxNetwork.
"""

from __future__ import annotations

import abc
import hashlib
from typing import Any, Dict, List, Optional

from edged.backends.tensorrt.api import TrtApi, gate
from edged.errors import BackendError

__all__ = ["NetworkSource", "OnnxNetwork", "create_implicit_batch_network", "create_network", "dla_capability"]


def create_network(api: TrtApi, builder: Any) -> Any:
    """An explicit-batch network on every supported version.

    8.x needs the EXPLICIT_BATCH flag (its ONNX parser refuses implicit batch); 10.x ignores
    it; 11.x removed the member and every network is explicit-batch and strongly typed.
    """
    flag = getattr(api.trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return builder.create_network(0 if flag is None else 1 << int(flag))


@gate(max_major=8)
def create_implicit_batch_network(api: TrtApi, builder: Any, max_batch: int) -> Any:
    """An implicit-batch network, for the UFF parser: it "supports neither explicit batch nor
    dynamic shapes" (every UFF sample at NVIDIA/TensorRT 8.5.2 calls createNetworkV2(0); issue
    438). Its engine runs batches up to ``builder.max_batch_size``."""
    builder.max_batch_size = max_batch
    return builder.create_network(0)


class NetworkSource(abc.ABC):
    """Fills ``network``; raises BackendError naming what in the model is wrong."""

    path: str
    implicit_batch = False  # True: built as an implicit-batch network (UFF)

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


@gate(min_major=10)  # OnnxParserFlag.REPORT_CAPABILITY_DLA arrived in 10.15
def dla_capability(api: TrtApi, builder: Any, logger: Any, config: Any, path: str) -> Optional[List[Dict[str, str]]]:
    """The ONNX parser's per-node DLA answer, ``[{"name": node, "device": "dla"|"gpu"}]``, or None
    where the parser cannot give one (before 10.15).

    With ``OnnxParserFlag.REPORT_CAPABILITY_DLA`` "a valid IBuilderConfig must be provided to
    the parser via setBuilderConfig()", and "if the model is not fully supported by DLA, then
    parsing will fail" (NvOnnxParser.h v10.16 / v11.1). So the build's own parser never sets
    it (GPU fallback must still parse); a second parser on a scratch network asks
    supports_model_v2 with the flag and the build's config, and reads each subgraph's answer.
    """
    trt = api.trt
    flag = getattr(getattr(trt, "OnnxParserFlag", None), "REPORT_CAPABILITY_DLA", None)
    parser = trt.OnnxParser(create_network(api, builder), logger)
    if flag is not None and hasattr(parser, "set_builder_config"):
        parser.set_flag(flag)
        if not parser.set_builder_config(config):
            return None
        with open(path, "rb") as handle:
            parser.supports_model_v2(handle.read(), path)
        names = _onnx_node_names(path) or []
        rows = []
        for index in range(parser.num_subgraphs):
            device = "dla" if parser.is_subgraph_supported(index) else "gpu"
            for node in parser.get_subgraph_nodes(index):
                rows.append({"name": names[node] if 0 <= node < len(names) else f"node #{node}", "device": device})
        return rows
    return None
