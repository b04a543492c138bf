"""Caffe and UFF parsers of the TensorRT test double (8.x only: the 10.x/11.x tables have
no CaffeParser or UffParser, so the module lacks the attribute, as the real one does).

CaffeParser fills the network through the double's network API (Input/Convolution/ReLU/
InnerProduct; other layer types log "could not parse layer type"), reading the weights
from the .caffemodel with a small protobuf wire reader. With an explicit-batch network the
real parser fixes the batch to 1, and so does this one. UFF protobufs are not modelled:
UffParser refuses an explicit-batch network as the real one does, and otherwise reads an ONNX
model in the UFF file's place into an implicit-batch network.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np

from edged.formats.prototxt import parse_text
from tests.trt_double.surface import Guarded


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[Tuple[int, int, Any]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _blob(data: bytes) -> np.ndarray:
    dims: List[int] = []
    values: List[float] = []
    for number, wire, value in _fields(data):
        if number == 7:  # BlobShape
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    pos = 0
                    while pos < len(v):
                        d, pos = _varint(v, pos)
                        dims.append(d)
                elif n == 1:
                    dims.append(v)
        elif number == 5 and wire == 2:
            values.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif number == 5 and wire == 5:
            values.append(struct.unpack("<f", value)[0])
    return np.asarray(values, np.float32).reshape(dims or (-1,))


def read_caffemodel(data: bytes) -> Dict[str, List[np.ndarray]]:
    """Layer name -> weight blobs of a binary NetParameter."""
    layers: Dict[str, List[np.ndarray]] = {}
    for number, _, value in _fields(data):
        if number != 100:
            continue
        name, blobs = "", []
        for n, _, v in _fields(value):
            if n == 1:
                name = v.decode()
            elif n == 7:
                blobs.append(_blob(v))
        layers[name] = blobs
    return layers


class IBlobNameToTensor(Guarded):
    _trt_class = "IBlobNameToTensor"

    def __init__(self, tensors: Dict[str, Any]) -> None:
        self._tensors = tensors

    def find(self, name: str) -> Any:
        return self._tensors.get(name)


class CaffeParser(Guarded):
    _trt_class = "CaffeParser"

    def __init__(self) -> None:
        self._double.parsers.append(self)

    def parse(self, deploy: str, model: str, network: Any, dtype: Any) -> Any:
        log = self._double.log
        with open(deploy, encoding="utf-8") as handle:
            fields = parse_text(handle.read(), deploy)
        with open(model, "rb") as handle:
            weights = read_caffemodel(handle.read())
        trt = self._trt
        explicit = network._flags != 0
        blobs: Dict[str, Any] = {}
        names = [v for k, v in fields if k == "input"]
        shapes = [[int(d) for k, d in s if k == "dim"] for k, s in fields if k == "input_shape"]
        for name, shape in zip(names, shapes):
            dims = (1, *shape[1:]) if explicit else tuple(shape[1:])
            blobs[name] = network.add_input(name, trt.DataType.FLOAT, dims)
        for key, layer in fields:
            if key != "layer":
                continue
            spec = dict(layer)
            kind, lname = spec.get("type"), spec.get("name")
            bottom, top = spec.get("bottom"), spec.get("top")
            if kind == "Convolution":
                p = dict(spec.get("convolution_param", []))
                k = int(p.get("kernel_size", 1))
                w = weights.get(lname, [])
                if not w:
                    log("ERROR", f"could not find weights for layer {lname}")
                    return None
                added = network.add_convolution_nd(
                    blobs[bottom], int(p["num_output"]), (k, k), w[0], w[1] if len(w) > 1 else None
                )
                added.padding_nd = (int(p.get("pad", 0)),) * 2
                added.stride_nd = (int(p.get("stride", 1)),) * 2
            elif kind == "ReLU":
                added = network.add_activation(blobs[bottom], trt.ActivationType.RELU)
            elif kind == "InnerProduct":
                p = dict(spec.get("inner_product_param", []))
                w = weights.get(lname, [])
                if not w:
                    log("ERROR", f"could not find weights for layer {lname}")
                    return None
                added = network.add_fully_connected(
                    blobs[bottom], int(p["num_output"]), w[0], w[1] if len(w) > 1 else None
                )
            else:
                log("ERROR", f"could not parse layer type {kind}")
                return None
            out = added.get_output(0)
            out._name = top  # the parser names tensors after their blobs; an in-place blob names the last writer
            previous = blobs.get(top)
            if previous is not None and previous is not out:
                previous._name = f"{top}_before_{lname}"
            blobs[top] = out
        return self._double.bind("IBlobNameToTensor")(blobs)


class UffParser(Guarded):
    _trt_class = "UffParser"

    def __init__(self) -> None:
        self._inputs: List[Tuple[str, Tuple[int, ...], Any]] = []
        self._outputs: List[str] = []
        self._double.parsers.append(self)

    def register_input(self, name: str, shape: Any, order: Any = None) -> bool:
        self._inputs.append((name, tuple(int(d) for d in shape), order))
        return True

    def register_output(self, name: str) -> bool:
        self._outputs.append(name)
        return True

    def parse(self, file: str, network: Any, weights_type: Any = None) -> bool:
        """The UFF parser supports neither explicit batch nor dynamic shapes (every UFF sample
        at NVIDIA/TensorRT 8.5.2 calls createNetworkV2(0); NVIDIA/TensorRT issue 438).

        Modelling choice: UFF protobufs are not modelled; the double reads an ONNX model from
        ``file`` in their place, with a leading batch axis the registered shapes leave out."""
        import onnx

        self._parsed = file
        flag = getattr(self._trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
        if flag is not None and network._flags & (1 << int(flag)):
            self._double.log("ERROR", "UFF parser does not support networks with an explicit batch dimension")
            return False
        try:
            model = onnx.load(file)
        except Exception:
            self._double.log("ERROR", f"{file}: not a UFF graph the double can read (it reads ONNX in their place)")
            return False
        network._load(model)
        registered = {name: shape for name, shape, _ in self._inputs}
        for tensor in network._inputs:
            if tensor.name not in registered:
                self._double.log("ERROR", f"UFF input {tensor.name} was not registered")
                return False
            tensor._shape = registered[tensor.name]  # implicit batch: the shape leaves out the batch
        return True
