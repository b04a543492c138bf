"""Just enough of protobuf's text format to read a Caffe prototxt's declared inputs.

Caffe declares inputs either at the top level (``input:`` with ``input_shape {dim}`` or
four ``input_dim:`` values each) or as layers of type ``Input`` (``input_param {shape
{dim}}``). Backends need them to describe IO before running anything.
"""

from __future__ import annotations

import re
from typing import Any, List, Tuple

from edged.errors import ConfigError

__all__ = ["parse_text", "caffe_inputs"]

_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}:;,\[\]]|[^\s{}:;,\[\]"\'#]+')
Fields = List[Tuple[str, Any]]


def _tokens(text: str, source: str) -> List[str]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ConfigError(f"{source}: cannot read the prototxt near offset {pos}")
        token = match.group(0)
        pos = match.end()
        if not token.isspace() and not token.startswith("#"):
            out.append(token)
    return out


def _scalar(token: str) -> Any:
    if token[:1] in "\"'":
        return token[1:-1]
    for kind in (int, float):
        try:
            return kind(token)
        except ValueError:
            pass
    return token  # enum value such as MAX or true


def parse_text(text: str, source: str = "prototxt") -> Fields:
    """Ordered (name, value) pairs; messages become nested lists of pairs."""
    tokens = _tokens(text, source)
    pos = 0

    def message(closing: bool) -> Fields:
        nonlocal pos
        fields: Fields = []
        while pos < len(tokens):
            token = tokens[pos]
            if token == "}":
                if not closing:
                    raise ConfigError(f"{source}: unexpected '}}'")
                pos += 1
                return fields
            if token in (";", ","):
                pos += 1
                continue
            name, pos = token, pos + 1
            if pos < len(tokens) and tokens[pos] == ":":
                pos += 1
            if pos >= len(tokens):
                raise ConfigError(f"{source}: field {name!r} has no value")
            if tokens[pos] == "{":
                pos += 1
                fields.append((name, message(True)))
            else:
                fields.append((name, _scalar(tokens[pos])))
                pos += 1
        if closing:
            raise ConfigError(f"{source}: missing '}}' at the end")
        return fields

    return message(False)


def _all(fields: Fields, name: str) -> List[Any]:
    return [value for key, value in fields if key == name]


def _dims(shape: Fields) -> Tuple[int, ...]:
    return tuple(int(d) for d in _all(shape, "dim"))


def caffe_inputs(text: str, source: str = "prototxt") -> List[Tuple[str, Tuple[int, ...]]]:
    """Each declared input blob and its full shape (batch first)."""
    fields = parse_text(text, source)
    names = [str(n) for n in _all(fields, "input")]
    shapes = [_dims(s) for s in _all(fields, "input_shape")]
    flat = [int(d) for d in _all(fields, "input_dim")]
    if not shapes and flat:
        shapes = [tuple(flat[i : i + 4]) for i in range(0, len(flat), 4)]
    inputs = list(zip(names, shapes))
    if names and len(shapes) != len(names):
        raise ConfigError(f"{source}: {len(names)} inputs but {len(shapes)} input shapes")
    for layer in _all(fields, "layer"):
        if not isinstance(layer, list) or str(dict(layer).get("type")) != "Input":
            continue
        params = dict(layer).get("input_param")
        shape_fields = _all(params, "shape") if isinstance(params, list) else []
        for top, shape in zip(_all(layer, "top"), shape_fields):
            inputs.append((str(top), _dims(shape)))
    if not inputs:
        raise ConfigError(f"{source}: declares no input (input/input_shape or an Input layer)")
    return inputs
