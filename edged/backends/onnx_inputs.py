"""The inputs of an ONNX model, read straight from its protobuf encoding.

Deciding whether a model's preprocessing can go into its plan (edged.pipeline.folding) needs
only the graph's inputs, initializer names and opset. The onnx package would parse the whole
model into Python objects and costs the daemon ~11 MB of resident memory for the rest of its
life, on every start, though a cached plan needs nothing else from it. This reader walks the
protobuf wire format (protobuf's encoding guide) with plain reads and skips everything but
those fields, weights included, by seeking past their length prefix.

Field numbers are onnx.proto's (ModelProto, GraphProto, ValueInfoProto, TypeProto,
TensorShapeProto, TensorProto, OperatorSetIdProto); tests/backends/test_onnx_inputs.py
checks the results against the onnx package on real models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

from edged.errors import BackendError

__all__ = ["GraphInput", "ModelInputs", "read_model_inputs"]

# onnx.proto field numbers.
_MODEL_OPSET_IMPORT, _MODEL_GRAPH = 8, 7
_GRAPH_INITIALIZER, _GRAPH_INPUT = 5, 11
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_ELEM_TYPE, _TENSOR_SHAPE = 1, 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2
_TENSOR_PROTO_NAME = 8
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class GraphInput:
    name: str
    elem_type: Optional[int]  # onnx TensorProto.DataType; None: not a tensor
    shape: Optional[Tuple[Optional[int], ...]]  # None: no shape given; None per dim: symbolic


@dataclass(frozen=True)
class ModelInputs:
    inputs: List[GraphInput]  # the graph's inputs that are not initializers, in order
    opset: int  # of the default domain ("" / ai.onnx); 0 when absent


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int, end: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _walk(varint_at: Callable[[int], Tuple[int, int]], start: int, end: int) -> Iterator[Tuple[int, int, int, int]]:
    """(field number, wire type, value or payload start, payload end) of each field between
    ``start`` and ``end``, reading varints with ``varint_at(pos) -> (value, next pos)``; for
    varints the value comes in the third place."""
    pos = start
    while pos < end:
        key, pos = varint_at(pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = varint_at(pos)
            yield number, wire, value, pos
        elif wire == _LENGTH:
            size, pos = varint_at(pos)
            if pos + size > end:
                raise _Malformed(f"field {number} runs past its message")
            yield number, wire, pos, pos + size
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
            if pos > end:
                raise _Malformed(f"field {number} runs past its message")
        else:
            raise _Malformed(f"wire type {wire} (field {number}) is not used by onnx.proto")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[Tuple[int, int, int, int]]:
    """The fields of ``buf[start:end]`` (see _walk)."""
    return _walk(lambda pos: _varint(buf, pos, end), start, end)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(buf: memoryview, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8", errors="replace")


def _dim(buf: memoryview, start: int, end: int) -> Optional[int]:
    for number, wire, a, _ in _fields(buf, start, end):
        if number == _DIM_VALUE and wire == _VARINT:
            return _signed(a)
    return None


def _tensor_type(buf: memoryview, start: int, end: int) -> Tuple[Optional[int], Optional[Tuple[Optional[int], ...]]]:
    elem: Optional[int] = None
    shape: Optional[List[Optional[int]]] = None
    for number, wire, a, b in _fields(buf, start, end):
        if number == _TENSOR_ELEM_TYPE and wire == _VARINT:
            elem = a
        elif number == _TENSOR_SHAPE and wire == _LENGTH:
            shape = shape or []
            shape.extend(_dim(buf, c, d) for n, w, c, d in _fields(buf, a, b) if n == _SHAPE_DIM and w == _LENGTH)
    return elem, None if shape is None else tuple(shape)


def _value_info(buf: memoryview, start: int, end: int) -> GraphInput:
    name, elem, shape = "", None, None
    for number, wire, a, b in _fields(buf, start, end):
        if number == _VALUE_NAME and wire == _LENGTH:
            name = _text(buf, a, b)
        elif number == _VALUE_TYPE and wire == _LENGTH:
            for n, w, c, d in _fields(buf, a, b):
                if n == _TYPE_TENSOR and w == _LENGTH:
                    elem, shape = _tensor_type(buf, c, d)
    return GraphInput(name, elem, shape)


# The largest opset entry or graph input read whole; real ones are a few hundred bytes.
_SMALL_MESSAGE = 1 << 20
_MAX_VARINT = 10  # bytes of a 64-bit varint


class _Stream:
    """The file read forward, seeking past every field not looked into (weights, nodes).
    Plain reads, not a memory map: a file cut short while it is read (copied over in place)
    is a short read, named as such, never a SIGBUS that would take the daemon down."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def _varint_at(self, pos: int) -> Tuple[int, int]:
        self._handle.seek(pos)
        data = memoryview(self._handle.read(_MAX_VARINT))
        value, used = _varint(data, 0, len(data))
        return value, pos + used

    def fields(self, start: int, end: int) -> Iterator[Tuple[int, int, int, int]]:
        """The fields of the file between ``start`` and ``end`` (see _walk)."""
        return _walk(self._varint_at, start, end)

    def read(self, start: int, end: int) -> memoryview:
        if end - start > _SMALL_MESSAGE:
            raise _Malformed(f"a {end - start}-byte entry where a few hundred bytes were expected")
        self._handle.seek(start)
        data = self._handle.read(end - start)
        if len(data) != end - start:
            raise _Malformed("the file ends inside a field")
        return memoryview(data)


def _parse(stream: _Stream, size: int) -> ModelInputs:
    inputs: List[GraphInput] = []
    initializers = set()
    opsets: Dict[str, int] = {}
    for number, wire, a, b in stream.fields(0, size):
        if number == _MODEL_OPSET_IMPORT and wire == _LENGTH:
            buf = stream.read(a, b)
            domain, version = "", 0
            for n, w, c, d in _fields(buf, 0, len(buf)):
                if n == _OPSET_DOMAIN and w == _LENGTH:
                    domain = _text(buf, c, d)
                elif n == _OPSET_VERSION and w == _VARINT:
                    version = _signed(c)
            opsets[domain] = version
        elif number == _MODEL_GRAPH and wire == _LENGTH:
            for n, w, c, d in stream.fields(a, b):
                if n == _GRAPH_INPUT and w == _LENGTH:
                    buf = stream.read(c, d)
                    inputs.append(_value_info(buf, 0, len(buf)))
                elif n == _GRAPH_INITIALIZER and w == _LENGTH:
                    initializers.add(_initializer_name(stream, c, d))
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    return ModelInputs([i for i in inputs if i.name not in initializers], opset)


def _initializer_name(stream: _Stream, start: int, end: int) -> str:
    for number, wire, a, b in stream.fields(start, end):
        if number == _TENSOR_PROTO_NAME and wire == _LENGTH:
            return bytes(stream.read(a, b)).decode("utf-8", errors="replace")
    return ""


def read_model_inputs(path: str) -> ModelInputs:
    """The non-initializer inputs and default-domain opset of the ONNX model at ``path``."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            if size == 0:
                raise BackendError(f"{path}: cannot read the ONNX model: the file is empty")
            return _parse(_Stream(handle), size)
    except _Malformed as exc:
        raise BackendError(f"{path}: cannot read the ONNX model: {exc}") from None
    except OSError as exc:
        raise BackendError(f"{path}: cannot read the ONNX model: {exc}") from exc
