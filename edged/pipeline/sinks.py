"""Where results go: a JSON Lines file, stdout, or nowhere.

Results are written ``flush_every`` at a time, or once the oldest held is ``HOLD_S`` old,
and whenever the pipeline goes quiet, each time in one unbuffered write: the sink knows
exactly which bytes reached the file, so a write that fails part-way (a full disk) leaves
no line repeated or torn. What was not written is held, oldest first, and written before
anything newer by the next flush. Past ``hold_bytes`` held, new results are refused
(:class:`ResultsRefused`) rather than grow the daemon's memory for as long as the disk
stays full.
"""

from __future__ import annotations

import abc
import errno
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Type

from edged.config.model import PluginConfig
from edged.errors import ConfigError

__all__ = ["HOLD_BYTES", "HOLD_S", "ResultsHeld", "ResultsRefused", "Sink", "StreamSink", "create_sink"]

log = logging.getLogger(__name__)

HOLD_BYTES = 8 << 20  # about 40,000 classification results: 20 minutes of a 30 fps camera
HOLD_S = 1.0  # a result reaches the file at most this late while the pipeline is busy


def _failed(kind: Type[OSError], cause: OSError, text: str) -> OSError:
    reason = f"{text}: {cause.strerror or cause}"
    return kind(cause.errno, reason) if cause.errno is not None else kind(reason)


class ResultsHeld(OSError):
    """The result was kept, but writing what was held failed; the next flush retries."""


class ResultsRefused(OSError):
    """The result was not kept: ``hold_bytes`` of earlier results are still unwritten."""


class Sink(abc.ABC):
    @abc.abstractmethod
    def write(self, record: Dict[str, Any]) -> None: ...

    def flush(self) -> None:
        """Make written records durable; default: nothing buffered."""

    def close(self) -> None:
        self.flush()

    def trouble(self) -> Optional[Dict[str, Any]]:
        """While results cannot be written: ``error`` (why, as the last failed write said)
        and ``held_bytes`` (what waits for room); None when all is written."""
        return None


class NullSink(Sink):
    def write(self, record: Dict[str, Any]) -> None:
        return None


class StreamSink(Sink):
    """JSON Lines through ``write_bytes`` (``os.write``'s contract: returns how many bytes
    it wrote, raises when it wrote none), ``flush_every`` records at a time."""

    def __init__(
        self, write_bytes: Callable[[bytearray], int], name: str, flush_every: int = 1, hold_bytes: int = HOLD_BYTES
    ) -> None:
        self._write_bytes = write_bytes
        self._name = name
        self._flush_every = max(1, flush_every)
        self._hold_bytes = hold_bytes
        self._pending = bytearray()
        self._records = 0  # written since the last flush
        self._error: Optional[str] = None  # the last failed write's, until all held is written
        self._flush_by = 0.0  # time.monotonic() by which the oldest of them is flushed
        # One encoder for every record: json.dumps with arguments builds a new one per call.
        self._encode = json.JSONEncoder(separators=(",", ":")).encode

    @property
    def held_bytes(self) -> int:
        return len(self._pending)

    def trouble(self) -> Optional[Dict[str, Any]]:
        error = self._error  # read once: the writing thread may clear it meanwhile
        return None if error is None else {"error": error, "held_bytes": len(self._pending)}

    def write(self, record: Dict[str, Any]) -> None:
        """Raises ResultsRefused when ``record`` was not kept, ResultsHeld when it was but
        the flush it triggered failed."""
        if len(self._pending) >= self._hold_bytes:
            try:
                self._write_pending()
            except OSError as exc:
                raise _failed(
                    ResultsRefused, exc, f"{self._name}: {self.held_bytes} bytes of results unwritten"
                ) from exc
        self._pending += self._encode(record).encode()
        self._pending += b"\n"
        self._records += 1
        now = time.monotonic()
        if self._records == 1:
            self._flush_by = now + HOLD_S
        if self._records >= self._flush_every or now >= self._flush_by:
            self.flush()

    def flush(self) -> None:
        """Raises ResultsHeld when what is held could not all be written."""
        self._records = 0
        try:
            self._write_pending()
        except OSError as exc:
            raise _failed(ResultsHeld, exc, f"{self._name}: {self.held_bytes} bytes of results held") from exc

    def _write_pending(self) -> None:
        if not self._pending:
            self._error = None
            return
        try:
            self._before_write()
            while self._pending:
                written = self._write_bytes(self._pending)
                whole = self._pending.rfind(b"\n", 0, written) + 1
                if whole < written and self._cut(written - whole):
                    # A short write to a file: the disk is full. The torn line stays held whole.
                    del self._pending[:whole]
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                del self._pending[:written]
        except OSError as exc:
            self._error = f"{self._name}: {exc.strerror or exc}"
            raise
        self._error = None
        self._after_write()

    def _before_write(self) -> None:
        """Ready the destination (a file moved away is reopened); raises OSError."""

    def _after_write(self) -> None:
        """Whatever follows a complete write (a file grown past its size is rotated)."""

    def _cut(self, torn: int) -> bool:
        """Take the last ``torn`` bytes written back off; False where that cannot be done
        (a pipe), and the rest of the line follows them when there is room."""
        return False


class JsonLinesSink(StreamSink):
    """Appends to ``path``, whole lines only: the part of a line a full disk cut short is
    taken off the file again at once (the model's next pipeline, started beside this one by a
    reload, may append to the same file before this one has room to finish it), and a file
    that ends part-way through a line (a power cut during a write) gets a line break before
    the first new result.

    Once the file reaches ``max_bytes`` (0: never) it becomes ``path.1``, older ones move up
    to ``path.<keep>`` and the oldest goes, so results take at most ``(keep + 1) *
    max_bytes`` of a disk the device shares with its plans and config. A file moved away
    (by another sink's rotation, or logrotate) is followed: the next write reopens ``path``.
    """

    def __init__(self, path: str, flush_every: int, max_bytes: int = 0, keep: int = 0) -> None:
        self.path = Path(path)
        self._max_bytes = max_bytes
        self._keep = keep
        self._rotate_failed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd: Optional[int] = self._open()
        except OSError as exc:
            raise ConfigError(f"sink.path: cannot open {str(self.path)!r} for appending: {exc.strerror}") from exc
        self._fd = fd
        super().__init__(self._write_fd, str(self.path), flush_every)
        self._end_line()

    def _open(self) -> int:
        return os.open(str(self.path), os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _end_line(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            self._pending[:0] = b"\n"

    def _write_fd(self, data: bytearray) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, f"{self.path} is closed")
        return os.write(self._fd, data)

    def _before_write(self) -> None:
        assert self._fd is not None
        mine = os.fstat(self._fd)
        try:
            there = os.stat(self.path)
            moved = (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino)
        except FileNotFoundError:
            moved = True
        if moved:
            self._reopen()

    def _reopen(self) -> None:
        fd = self._open()
        assert self._fd is not None
        os.close(self._fd)
        self._fd = fd
        self._end_line()

    def _after_write(self) -> None:
        if not self._max_bytes or self._fd is None or os.fstat(self._fd).st_size < self._max_bytes:
            return
        try:
            for index in range(self._keep - 1, 0, -1):
                older = Path(f"{self.path}.{index}")
                if older.exists():
                    os.replace(older, f"{self.path}.{index + 1}")
            if self._keep:
                os.replace(self.path, f"{self.path}.1")
            else:
                os.unlink(self.path)
            self._reopen()
        except OSError as exc:
            if not self._rotate_failed:  # once, not on every write: the results still go on
                log.error("%s: rotating the results file failed, appending on: %s", self.path, exc)
            self._rotate_failed = True
            return
        self._rotate_failed = False

    def _cut(self, torn: int) -> bool:
        if self._fd is None:
            return False
        try:
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - torn)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._fd is None:
            return  # closed already (a model set stopped twice)
        try:
            self._write_pending()
        except OSError as exc:
            raise _failed(OSError, exc, f"{self._name}: {self.held_bytes} bytes of results lost at close") from exc
        finally:
            os.close(self._fd)
            self._fd = None


def _stdout_bytes(data: bytearray) -> int:
    sys.stdout.flush()  # after whatever else went to stdout
    return os.write(sys.stdout.fileno(), data)


def create_sink(config: PluginConfig) -> Sink:
    if config.type == "jsonl":
        return JsonLinesSink(
            config.get("path"),
            int(config.get("flush_every", 64)),
            max_bytes=int(config.get("max_mb", 64)) << 20,
            keep=int(config.get("keep", 3)),
        )
    if config.type == "stdout":
        return StreamSink(_stdout_bytes, "stdout")
    if config.type == "null":
        return NullSink()
    raise ConfigError(f"sink.type: {config.type!r} is not one of jsonl, stdout, null")
