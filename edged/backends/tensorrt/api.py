"""The imported tensorrt module, its version, and a logger that keeps what TensorRT says."""

from __future__ import annotations

import collections
import functools
import importlib
import logging
import threading
from typing import Any, Callable, Deque, List, Optional, Tuple, TypeVar

from edged.errors import BackendError, BackendUnavailable

__all__ = ["TrtApi", "gate", "import_tensorrt", "make_logger"]

log = logging.getLogger(__name__)

MIN_VERSION = (8, 5)  # set_tensor_address + execute_async_v3 exist from 8.5 on


class TrtApi:
    """The tensorrt module plus the parsed version the backend's version gates read."""

    def __init__(self, module: Any) -> None:
        self.trt = module
        self.version_string = str(module.__version__)
        parts = [int(p) for p in self.version_string.split(".")[:2] if p.isdigit()]
        self.version: Tuple[int, int] = (parts[0], parts[1] if len(parts) > 1 else 0)
        self.major = self.version[0]
        if self.version < MIN_VERSION:
            raise BackendUnavailable(
                f"TensorRT {self.version_string} is too old; edged needs 8.5 or newer (JetPack 5.1+)"
            )


F = TypeVar("F", bound=Callable[..., Any])


def gate(min_major: int = 0, max_major: int = 99) -> Callable[[F], F]:
    """Marks a function (first argument: the TrtApi) that uses names existing only in
    TensorRT majors ``min_major..max_major``. Calling it on another major is a bug and
    raises; the API-surface test reads the range to check the names inside."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(api: TrtApi, *args: Any, **kwargs: Any) -> Any:
            if not min_major <= api.major <= max_major:
                raise BackendError(f"{fn.__name__} needs TensorRT {min_major}..{max_major}, not {api.version_string}")
            return fn(api, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def import_tensorrt(module: Optional[Any] = None) -> TrtApi:
    if module is None:
        try:
            module = importlib.import_module("tensorrt")
        except ImportError as exc:
            raise BackendUnavailable(
                "backend 'tensorrt' needs TensorRT's Python bindings: on Jetson `apt install python3-libnvinfer` "
                "(JetPack), on x86 `pip install tensorrt`"
            ) from exc
    return TrtApi(module)


class LogTail:
    """Thread-safe ring of the last TensorRT log lines, numbered so a caller can read back
    just the errors logged during its own call."""

    def __init__(self, size: int = 200) -> None:
        self._lines: Deque[Tuple[int, str, str]] = collections.deque(maxlen=size)
        self._next = 0
        self._lock = threading.Lock()

    def add(self, severity: str, message: str) -> None:
        with self._lock:
            self._lines.append((self._next, severity, message))
            self._next += 1

    def mark(self) -> int:
        with self._lock:
            return self._next

    def lines(self, since: int = 0) -> List[str]:
        with self._lock:
            return [f"{sev}: {msg}" for seq, sev, msg in self._lines if seq >= since]

    def errors_since(self, mark: int) -> List[str]:
        with self._lock:
            return [msg for seq, sev, msg in self._lines if seq >= mark and sev in ("ERROR", "INTERNAL_ERROR")]


_PY_LEVELS = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING}


def make_logger(api: TrtApi, tail: LogTail, min_severity: str = "INFO") -> Any:
    """An ILogger subclass instance that keeps every message in ``tail`` and forwards
    warnings and errors to Python logging. TensorRT calls it from its own threads."""
    trt = api.trt
    severity = trt.ILogger.Severity
    threshold = int(getattr(severity, min_severity))

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, sev: Any, msg: str) -> None:
            # Lower enum values are more severe (INTERNAL_ERROR = 0 ... VERBOSE = 4).
            if int(sev) > threshold:
                return
            name = str(getattr(sev, "name", sev)).split(".")[-1]
            tail.add(name, msg)
            level = _PY_LEVELS.get(name)
            if level is not None:
                log.log(level, "TensorRT: %s", msg)

    return _Logger()
