"""Where results go: a JSON Lines file, stdout, or nowhere."""

from __future__ import annotations

import abc
import json
import sys
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

from edged.config.model import PluginConfig
from edged.errors import ConfigError

__all__ = ["Sink", "create_sink"]


class Sink(abc.ABC):
    @abc.abstractmethod
    def write(self, record: Dict[str, Any]) -> None: ...

    def flush(self) -> None:
        """Make written records durable; default: nothing buffered."""

    def close(self) -> None:
        self.flush()


class NullSink(Sink):
    def write(self, record: Dict[str, Any]) -> None:
        return None


class StreamSink(Sink):
    """JSON Lines on a text stream, written ``flush_every`` records at a time: one write and
    one flush per batch of lines instead of per record."""

    def __init__(self, stream: IO[str], flush_every: int = 1) -> None:
        self._stream = stream
        self._flush_every = max(1, flush_every)
        self._lines: List[str] = []
        # One encoder for every record: json.dumps with arguments builds a new one per call.
        self._encode = json.JSONEncoder(separators=(",", ":")).encode

    def write(self, record: Dict[str, Any]) -> None:
        self._lines.append(self._encode(record))
        if len(self._lines) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            # Cleared only once written: a failed write (a full disk) is retried by the next flush.
            self._stream.write("\n".join(self._lines) + "\n")
            self._lines = []
        self._stream.flush()


class JsonLinesSink(StreamSink):
    def __init__(self, path: str, flush_every: int) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ConfigError(f"sink.path: cannot open {str(self.path)!r} for appending: {exc.strerror}") from exc
        super().__init__(handle, flush_every)
        self._handle: Optional[IO[str]] = handle

    def close(self) -> None:
        if self._handle is None:
            return  # closed already (a model set stopped twice)
        super().close()
        self._handle.close()
        self._handle = None


def create_sink(config: PluginConfig) -> Sink:
    if config.type == "jsonl":
        return JsonLinesSink(config.get("path"), int(config.get("flush_every", 64)))
    if config.type == "stdout":
        return StreamSink(sys.stdout)
    if config.type == "null":
        return NullSink()
    raise ConfigError(f"sink.type: {config.type!r} is not one of jsonl, stdout, null")
