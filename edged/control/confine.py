"""Where each path a push can set may point, field by field.

Every model field that names a file has a kind:

* read by the model (the model file, labels, calibration and accuracy-validation images,
  a Caffe prototxt, a network builder's code folder): inside ``control.model_dirs``;
* media read or results written (an images folder or video file, a jsonl sink): inside
  ``control.data_dirs``;
* a camera node (v4l2 ``device``): matching one of the ``control.devices`` patterns.

A value the config in force already uses *in the same field* stays allowed, so a patch
may leave models from the local file as they are; the exemption never carries a path from
one field to another. Whatever either config says, a sink may never write to a file that
any model reads, nor inside a folder a model reads.

A pushed network builder is code that will run on the device: a push may set one only
when this device requires signed pushes (``control.public_keys``), with its
``python_path`` inside the model directories and its module found there (never on
sys.path). Nothing is imported while checking: the module file is found by walking the
folder (edged/formats/builder.py's ``module_file``).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from edged.config.sources import store_dir
from edged.control.paths import confinement_problem
from edged.control.settings import ControlSettings
from edged.formats.builder import module_file, split_spec

__all__ = ["Field", "FIELDS", "path_problems"]


@dataclass(frozen=True)
class Field:
    path: Tuple[str, ...]  # inside a model entry
    kind: str  # "model" | "data" | "device"
    writes: bool = False
    must_exist: bool = True

    @property
    def name(self) -> str:
        return ".".join(self.path)


FIELDS = (
    Field(("path",), "model"),
    Field(("postprocess", "labels"), "model"),
    Field(("calibration", "images"), "model"),
    Field(("accuracy", "images"), "model"),
    Field(("format", "prototxt"), "model"),
    Field(("format", "python_path"), "model"),
    Field(("source", "path"), "data"),
    Field(("source", "device"), "device", must_exist=False),
    Field(("sink", "path"), "data", writes=True, must_exist=False),
)

_MISSING_FILE = "no such file or folder"
_SETTING = {"model": "control.model_dirs", "data": "control.data_dirs"}


def _value(model: Any, path: Tuple[str, ...]) -> Optional[str]:
    node = model
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node if isinstance(node, str) else None


def _models(document: Mapping[str, Any]) -> List[Any]:
    models = document.get("models")
    return models if isinstance(models, list) else []


def _in_force(current: Mapping[str, Any]) -> Dict[Tuple[str, ...], Set[str]]:
    used: Dict[Tuple[str, ...], Set[str]] = {f.path: set() for f in FIELDS}
    for model in _models(current):
        for f in FIELDS:
            value = _value(model, f.path)
            if value is not None:
                used[f.path].add(value)
    return used


def _device_problem(path: str, patterns: Sequence[str]) -> Optional[str]:
    if "\x00" in path:
        return "contains a NUL character"
    if not os.path.isabs(path) or ".." in path.split("/"):
        return "must be an absolute path without '..'"
    real = os.path.realpath(path)
    # Both the name and what it resolves to: a by-id symlink needs its own pattern, and
    # a link from an allowed name to any other file is refused.
    if any(fnmatch.fnmatchcase(path, p) for p in patterns) and any(fnmatch.fnmatchcase(real, p) for p in patterns):
        return None
    shown = f" (resolves to {real})" if real != path else ""
    return f"is not allowed by control.devices {list(patterns)}{shown}"


def _field_problem(f: Field, value: str, settings: ControlSettings, store: str) -> Optional[str]:
    if f.kind == "device":
        return _device_problem(value, settings.devices)
    # The download store holds model files too (edged/config/sources.py).
    dirs = (*settings.model_dirs, store) if f.kind == "model" else settings.data_dirs
    problem = confinement_problem(value, dirs, _SETTING[f.kind])
    if problem is None and f.must_exist and not os.path.exists(value):
        return _MISSING_FILE
    return problem


def _builder_module(model: Any) -> Optional[str]:
    fmt = model.get("format") if isinstance(model, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "network-builder":
        return None
    spec, folder = fmt.get("builder"), fmt.get("python_path")
    if not isinstance(spec, str) or not isinstance(folder, str):
        return None
    return module_file(split_spec(spec)[0], folder)


def _builder_problems(index: int, model: Any, current: Mapping[str, Any], settings: ControlSettings) -> List[str]:
    fmt = model.get("format") if isinstance(model, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "network-builder":
        return []
    if any(isinstance(m, dict) and m.get("format") == fmt for m in _models(current)):
        return []  # the same builder is already in force (from the local file or a signed push)
    key = f"models[{index}].format"
    if not settings.public_keys:
        return [
            f"{key}: a network builder is code that runs on this device; a push may set one only when "
            "pushes must be signed (configure control.public_keys)"
        ]
    folder = fmt.get("python_path")
    if not isinstance(folder, str):
        return [f"{key}.python_path: required for a pushed network builder (its code is never taken from sys.path)"]
    found = _builder_module(model)
    if found is None:
        module = split_spec(str(fmt.get("builder")))[0]
        return [f"{key}.builder: no source file for module {module!r} under python_path {folder!r}"]
    problem = confinement_problem(found, settings.model_dirs, "control.model_dirs")
    return [f"{key}.builder: {found!r} {problem}"] if problem else []


@dataclass(frozen=True)
class _Read:
    where: str  # "models[1] 'name' (labels, in the config in force)"
    real: str
    identity: Optional[Tuple[int, int]]
    is_dir: bool


def _read_entry(path: str, where: str) -> _Read:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return _Read(where, real, None, False)
    return _Read(where, real, (st.st_dev, st.st_ino), os.path.isdir(real))


def _reads(document: Mapping[str, Any], label: str) -> Iterator[_Read]:
    for index, model in enumerate(_models(document)):
        name = model.get("name") if isinstance(model, dict) else None
        for f in FIELDS:
            value = _value(model, f.path)
            if value is not None and not f.writes and f.kind != "device":
                yield _read_entry(value, f"models[{index}] {name!r} ({f.name}, {label})")
        module = _builder_module(model)
        if module is not None:
            yield _read_entry(module, f"models[{index}] {name!r} (builder code, {label})")


def _overwrites(sink: str, reads: Sequence[_Read]) -> Optional[_Read]:
    real = os.path.realpath(sink)
    try:
        st = os.stat(real)
        identity: Optional[Tuple[int, int]] = (st.st_dev, st.st_ino)
    except OSError:
        identity = None
    for read in reads:
        if real == read.real or (identity is not None and identity == read.identity):
            return read  # the same file, also through a symlink or a hard link
        if read.is_dir and real.startswith(read.real.rstrip(os.sep) + os.sep):
            return read
    return None


def path_problems(proposed: Mapping[str, Any], current: Mapping[str, Any], settings: ControlSettings) -> List[str]:
    """Every path problem of the ``proposed`` (defaults-filled) document of a push,
    against the ``current`` document in force."""
    # The OS cannot even be asked about a path with a NUL byte (ValueError from os.stat).
    nul = [
        f"models[{index}].{f.name}: contains a NUL byte"
        for index, model in enumerate(_models(proposed))
        for f in FIELDS
        if "\0" in (_value(model, f.path) or "")
    ]
    if nul:
        return nul
    in_force = _in_force(current)
    store = store_dir(proposed)
    reads = [*_reads(proposed, "in this push"), *_reads(current, "in the config in force")]
    problems: List[str] = []
    for index, model in enumerate(_models(proposed)):
        for f in FIELDS:
            value = _value(model, f.path)
            if value is None:
                continue
            key = f"models[{index}].{f.name}"
            if value not in in_force[f.path]:
                problem = _field_problem(f, value, settings, store)
                if problem == _MISSING_FILE:
                    problems.append(f"{key}: {problem} {value!r}")
                elif problem:
                    problems.append(f"{key}: {value!r} {problem}")
                if problem:
                    continue
            if f.writes:
                read = _overwrites(value, reads)
                if read is not None:
                    problems.append(
                        f"{key}: {value!r} is read by {read.where}; a sink may never write to a file a model reads"
                    )
        problems += _builder_problems(index, model, current, settings)
    return problems
