"""Network-builder functions: finding, hashing, loading and calling ``module:function``.

The builder is the user's code. Its plan key covers the function's own source and its
module file, read from disk without running it, so editing one line rebuilds the plan
even in a daemon that imported an older copy. Finding the file walks the folders itself:
``importlib.util.find_spec("pkg.mod")`` would import ``pkg`` (running its ``__init__``)
to learn its ``__path__``, and nothing may run before the build itself. When it raises, the error names the line
of the user's code that failed, not the edged frame that called it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import os
import sys
import threading
import traceback
from contextlib import contextmanager, suppress
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from edged.errors import NetworkBuilderError

__all__ = ["builder_hashes", "call_builder", "load_builder", "locate_builder", "module_file", "split_spec"]

BuilderFunction = Callable[[Any, Any, str], Any]

_EDGED_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# sys.path is process-wide; builds may run on background threads.
_PATH_LOCK = threading.RLock()


def split_spec(spec: str) -> Tuple[str, str]:
    module, sep, function = spec.partition(":")
    if not sep or not module or not function:
        raise NetworkBuilderError(f"builder {spec!r}: expected module:function")
    return module, function


@contextmanager
def _search_path(python_path: Optional[str]) -> Iterator[None]:
    with _PATH_LOCK:
        if not python_path:
            yield
            return
        folder = os.path.abspath(python_path)
        sys.path.insert(0, folder)
        try:
            yield
        finally:
            sys.path.remove(folder)


def module_file(module: str, folder: str) -> Optional[str]:
    """The source file of dotted ``module`` under ``folder`` (``a/b.py`` or
    ``a/b/__init__.py`` for ``a.b``), found without importing anything."""
    parts = module.split(".")
    base = os.path.join(os.path.abspath(folder or os.curdir), *parts)
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def locate_builder(spec: str, python_path: Optional[str] = None) -> str:
    """The source file of the builder's module (python_path first, then sys.path), as
    the import system's path finder would find it for a plain source module."""
    module, _ = split_spec(spec)
    with _PATH_LOCK:
        folders = ([python_path] if python_path else []) + [p for p in sys.path if isinstance(p, str)]
    for folder in folders:
        if os.path.isfile(folder):
            continue  # a zip archive on sys.path holds no source file to hash
        found = module_file(module, folder)
        if found is not None:
            return found
    where = f"python_path {python_path!r} or sys.path" if python_path else "sys.path"
    raise NetworkBuilderError(f"builder {spec!r}: no Python source file for module {module!r} in {where}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def builder_hashes(spec: str, python_path: Optional[str] = None) -> Dict[str, str]:
    """Content hashes for the plan key: the module file and, when the function is a
    top-level ``def`` there, its own source text."""
    path = locate_builder(spec, python_path)
    _, function = split_spec(spec)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise NetworkBuilderError(f"builder {spec!r}: cannot read {path}: {exc.strerror}") from exc
    hashes = {"builder_module": _sha256(data)}
    text = data.decode("utf-8", errors="replace")
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise NetworkBuilderError(f"builder {spec!r}: {path}, line {exc.lineno}: syntax error: {exc.msg}") from exc
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            segment = ast.get_source_segment(text, node) or ""
            decorators = [ast.get_source_segment(text, d) or "" for d in node.decorator_list]
            hashes["builder_source"] = _sha256("\n".join([*decorators, segment]).encode("utf-8"))
    return hashes


def load_builder(spec: str, python_path: Optional[str] = None) -> BuilderFunction:
    """Import (or re-import, picking up edits) the module and return the function."""
    module_name, function = split_spec(spec)
    locate_builder(spec, python_path)
    with _search_path(python_path):
        try:
            module = sys.modules.get(module_name)
            module = importlib.reload(module) if module is not None else importlib.import_module(module_name)
        except Exception as exc:  # the user's module may raise anything while importing
            raise _builder_failure(spec, "failed to import", exc, python_path) from exc
    target = getattr(module, function, None)
    if target is None:
        raise NetworkBuilderError(f"builder {spec!r}: module {module_name!r} has no attribute {function!r}")
    if not callable(target):
        raise NetworkBuilderError(f"builder {spec!r}: {function!r} is not callable")
    fn: BuilderFunction = target
    return fn


def call_builder(
    fn: BuilderFunction, spec: str, trt: Any, network: Any, weights_path: str, python_path: Optional[str] = None
) -> None:
    """Run the builder; any exception becomes a NetworkBuilderError naming the user's line."""
    try:
        fn(trt, network, weights_path)
    except Exception as exc:
        raise _builder_failure(spec, "raised", exc, python_path) from exc


def _is_edged(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_EDGED_DIR + os.sep)


def _builder_failure(spec: str, verb: str, exc: BaseException, python_path: Optional[str]) -> NetworkBuilderError:
    frames: List[traceback.FrameSummary] = [
        f for f in traceback.extract_tb(exc.__traceback__) if not _is_edged(f.filename)
    ]
    module_file: Optional[str] = None
    with suppress(NetworkBuilderError):
        module_file = os.path.abspath(locate_builder(spec, python_path))
    folder = os.path.abspath(python_path) + os.sep if python_path else None

    def is_users(frame: traceback.FrameSummary) -> bool:
        name = os.path.abspath(frame.filename)
        return name == module_file or bool(folder and name.startswith(folder))

    # The deepest frame in the user's own files; a failure inside the TensorRT module is
    # reported at the user's line that called into it.
    users = [f for f in frames if is_users(f)]
    frame = users[-1] if users else (frames[0] if frames else None)
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" at {exc.filename}, line {exc.lineno}" + (f": {exc.text.strip()}" if exc.text else "")
    elif frame is not None:
        where = f" at {frame.filename}, line {frame.lineno}" + (f": {frame.line}" if frame.line else "")
    else:
        where = ""
    detail = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(exc), exc))
    return NetworkBuilderError(f"builder {spec!r} {verb} {type(exc).__name__}: {exc}{where}", detail)
