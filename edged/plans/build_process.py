"""Plan builds in a child process.

A build is the largest transient in the daemon's life: ONNX Runtime's optimiser holds a
whole session of the model, the input prefix imports ``onnx`` (11 MB that would stay for
the daemon's life), and a precision conversion holds a copy of the graph. In a child,
all of it goes back to the kernel when the child exits, and a build that crashes or is
killed (the kernel's OOM killer on a small device) is a failed build of one model, not a
daemon restart that stops every model.

The child is ``python -m edged.plans.build_process``: it reads one pickled request on
stdin and writes length-prefixed pickled messages on stdout (progress, then the built plan
or the error). Both ends are this package, in the same interpreter.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Deque, Dict, Optional, Tuple, Type

from edged.backends.base import Backend, BuildOptions, BuiltPlan, ProgressCallback
from edged.errors import BackendError, BackendUnavailable, ConfigError, EdgedError, PlanError

__all__ = ["build_plan", "build_in_child"]

_HEADER = struct.Struct("!I")
_STDERR_LINES = 20
_PR_SET_PDEATHSIG = 1
# Errors the child reports that keep their type in the daemon: callers treat them apart.
_KNOWN: Dict[str, Type[EdgedError]] = {
    cls.__name__: cls for cls in (BackendError, BackendUnavailable, ConfigError, PlanError)
}


def build_plan(
    backend: Backend, model_path: str, options: BuildOptions, progress: Optional[ProgressCallback] = None
) -> BuiltPlan:
    """The backend's plan for ``model_path``, built in a child process where the backend
    allows it (``Backend.builds_in_child``), else in this one."""
    if not backend.builds_in_child:
        return backend.build_plan(model_path, options, progress)
    return build_in_child(backend.name, model_path, options, progress)


def build_in_child(
    backend_name: str, model_path: str, options: BuildOptions, progress: Optional[ProgressCallback] = None
) -> BuiltPlan:
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "edged.plans.build_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
    except OSError as exc:  # no memory or process slots left to fork, or no interpreter
        raise BackendError(f"{model_path}: cannot start the plan build process: {exc}") from exc
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    stderr_tail: Deque[str] = collections.deque(maxlen=_STDERR_LINES)
    drain = threading.Thread(target=_drain, args=(child.stderr, stderr_tail), name="edged-build-stderr", daemon=True)
    drain.start()
    try:
        with child.stdin:
            pickle.dump((backend_name, model_path, options), child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        outcome = _read_outcome(child.stdout, progress)
    except BrokenPipeError:  # the child died before it read the request
        outcome = None
    finally:
        child.stdout.close()
        returncode = child.wait()
        drain.join(timeout=5.0)
    if outcome is None:
        raise BackendError(f"{model_path}: {_death(returncode)}{_tail(stderr_tail)}")
    kind, payload = outcome
    if kind == "built":
        built: BuiltPlan = payload
        return built
    name, message = payload
    raise _KNOWN.get(name, BackendError)(message if name in _KNOWN else f"{model_path}: plan build failed: {message}")


def _read_outcome(stream: IO[bytes], progress: Optional[ProgressCallback]) -> Optional[Tuple[str, Any]]:
    """The child's last message ("built" or "error"), relaying progress; None when the
    child's output ends without one (it died)."""
    while True:
        message = _receive(stream)
        if message is None:
            return None
        kind, payload = message
        if kind == "progress":
            if progress is not None:
                progress(*payload)
            continue
        return kind, payload


def _receive(stream: IO[bytes]) -> Optional[Tuple[str, Any]]:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    message: Tuple[str, Any] = pickle.loads(body)
    return message


def _drain(stream: IO[bytes], tail: Deque[str]) -> None:
    with stream:
        for line in stream:
            tail.append(line.decode("utf-8", "replace").rstrip())


def _death(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = " (the kernel's out-of-memory killer sends it)" if -returncode == signal.SIGKILL else ""
        return f"the plan build process was killed by {name}{why}"
    return f"the plan build process exited with status {returncode} without a result"


def _tail(lines: Deque[str]) -> str:
    text = " | ".join(line for line in lines if line)
    return f"; its last output: {text}" if text else ""


# -- the child ------------------------------------------------------------------------------


def _send(stream: IO[bytes], message: Tuple[str, Any]) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _die_with_parent() -> None:
    """A daemon killed mid-build must not leave its builder holding memory."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux/glibc: it ends when its pipe does
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_main() -> int:
    _die_with_parent()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a library's prints must not corrupt the message stream
    backend_name, model_path, options = pickle.load(sys.stdin.buffer)
    try:
        from edged.backends import get_backend

        def relay(fraction: Optional[float], phase: str) -> None:
            _send(out, ("progress", (fraction, phase)))

        built = get_backend(backend_name).build_plan(model_path, options, relay)
    except Exception as exc:  # every failure goes back to the daemon, named
        name = type(exc).__name__
        _send(out, ("error", (name, str(exc) if name in _KNOWN else f"{name}: {exc}")))
        return 0
    _send(out, ("built", built))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
