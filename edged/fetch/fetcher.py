"""Make the files a model names by URL present and verified in the content-addressed store.

For each file: when ``<store>/<sha256>`` exists and hashes right, it is used (a file that
no longer matches is removed and fetched again). Otherwise it is downloaded into
``<store>/.partial/<sha256>``: attempts resume where the previous one stopped (HTTP Range;
across restarts too, since the partial file is named by the hash it must reach), failed
attempts are retried with doubling back-off, and all of it is bounded by
``control.downloads.deadline_s``. Only a file whose SHA-256 matches is renamed to its
store name; a mismatch after a resumed transfer is given one fresh start (the server's
file may have changed under the resume) before it is refused. Nothing else ever lies
under a store name, so no reader can see a partial or wrong file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from typing import Callable, Dict, Iterator, Optional, Sequence, Set, Tuple

from edged.config.sources import RemoteFile
from edged.errors import EdgedError
from edged.fetch.archive import ArchiveError, unpack
from edged.fetch.progress import DownloadBoard, DownloadProgress, RateMeter
from edged.fetch.settings import DownloadSettings
from edged.fetch.transfer import Transfer, TransferError, tls_context

__all__ = ["FetchError", "Fetcher", "PARTIAL_DIR", "sha256_of"]

log = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
_BACKOFF_MAX_S = 60.0
_HASH_CHUNK = 1 << 20

OnProgress = Callable[[DownloadProgress], None]
_Identity = Tuple[int, int, int, int]


class FetchError(EdgedError):
    """A model's file could not be fetched; the message names the model, field, URL and cause."""


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _identity(path: str) -> _Identity:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Fetcher:
    """One per daemon: it remembers which store files it has verified (by inode, size and
    time, so an untouched file is not hashed again) and which downloads are under way."""

    def __init__(self, board: Optional[DownloadBoard] = None, stop: Optional[threading.Event] = None) -> None:
        self.board = board or DownloadBoard()
        self.stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._locks: Dict[str, threading.Lock] = {}
        self._verified: Dict[str, _Identity] = {}
        self._active: Set[str] = set()

    @property
    def active(self) -> Set[str]:
        """Hashes being downloaded now (garbage collection leaves their partial files)."""
        with self._lock:
            return set(self._active)

    def ensure(
        self,
        model: str,
        sources: Sequence[RemoteFile],
        settings: DownloadSettings,
        deadline: Optional[float] = None,
        on_progress: Optional[OnProgress] = None,
    ) -> None:
        """Every file of ``sources`` present and verified, or FetchError naming the first
        that is not. ``deadline`` (time.monotonic()): default ``deadline_s`` from now."""
        deadline = time.monotonic() + settings.deadline_s if deadline is None else deadline
        for source in sources:
            try:
                self._ensure_one(model, source, settings, deadline, on_progress)
            except (TransferError, ArchiveError, OSError) as exc:
                raise FetchError(f"model {model!r} {source.field}: {source.url}: {exc}") from exc
            finally:
                self.board.finish(model, source.field)

    @contextlib.contextmanager
    def _hold(self, sha: str) -> Iterator[None]:
        with self._lock:
            lock = self._locks.setdefault(sha, threading.Lock())
        with lock:
            yield

    def _ensure_one(
        self, model: str, source: RemoteFile, settings: DownloadSettings, deadline: float, on: Optional[OnProgress]
    ) -> None:
        with self._hold(source.sha256):
            if not self._present(source):
                self._download(model, source, settings, deadline, on)
            if source.archive and not os.path.isdir(source.path):
                unpack(source.file, source.path, os.path.join(source.store, PARTIAL_DIR), settings.max_bytes)
            # A store file's time is when it was last used: garbage collection's grace counts from it.
            os.utime(source.file)
            self._verified[source.file] = _identity(source.file)

    def _present(self, source: RemoteFile) -> bool:
        path = source.file
        try:
            identity = _identity(path)
        except FileNotFoundError:
            return False
        if self._verified.get(path) == identity:
            return True
        actual = sha256_of(path)
        if actual == source.sha256:
            self._verified[path] = identity
            return True
        log.error("%s: content hashes to %s, not its name; removed and fetched again", path, actual)
        os.unlink(path)
        return False

    def _download(
        self, model: str, source: RemoteFile, settings: DownloadSettings, deadline: float, on: Optional[OnProgress]
    ) -> None:
        if source.size is not None and source.size > settings.max_bytes:
            raise TransferError(f"size {source.size} is over control.downloads.max_bytes ({settings.max_bytes})", False)
        partial_dir = os.path.join(source.store, PARTIAL_DIR)
        os.makedirs(partial_dir, exist_ok=True)
        part_path = os.path.join(partial_dir, source.sha256)
        meter = RateMeter()

        def report(done: int, total: Optional[int], state: str = "downloading") -> None:
            progress = DownloadProgress(
                model, source.field, source.url, done, total or source.size, meter.add(done), state
            )
            self.board.update(progress)
            if on is not None:
                on(progress)

        with self._lock:
            self._active.add(source.sha256)
        try:
            fresh_start = False
            while True:
                resumed = self._transfer(model, source, settings, deadline, part_path, report)
                actual = sha256_of(part_path)
                if actual == source.sha256:
                    break
                os.truncate(part_path, 0)
                if resumed and not fresh_start:
                    log.warning("model %s: %s resumed to a wrong hash; downloading it whole", model, source.url)
                    fresh_start = True
                    continue
                raise TransferError(f"sha256 mismatch: the file hashes to {actual}, expected {source.sha256}", False)
            os.replace(part_path, source.file)
            _fsync_dir(source.store)
            log.info("model %s: %s verified and stored as %s", model, source.url, source.file)
        except BaseException:
            # An empty partial file holds nothing worth resuming: leave no trace of it.
            with contextlib.suppress(OSError):
                if os.path.getsize(part_path) == 0:
                    os.unlink(part_path)
            raise
        finally:
            with self._lock:
                self._active.discard(source.sha256)

    def _transfer(
        self,
        model: str,
        source: RemoteFile,
        settings: DownloadSettings,
        deadline: float,
        part_path: str,
        report: Callable[..., None],
    ) -> bool:
        """Attempts until the partial file is whole (as far as sizes tell), retrying what
        may succeed later; True when some attempt resumed earlier bytes."""
        context = tls_context(settings)
        attempt, resumed = 0, False
        while True:
            fd = os.open(part_path, os.O_RDWR | os.O_CREAT, 0o644)
            with os.fdopen(fd, "r+b", buffering=0) as part:
                offset = part.seek(0, os.SEEK_END)
                if source.size is not None and offset > source.size:
                    part.truncate(0)
                    offset = 0
                if offset:
                    resumed = True
                    log.info("model %s: resuming %s at byte %d", model, source.url, offset)
                try:
                    if source.size is None or offset < source.size:
                        Transfer(source.url, part, settings, context, source.size, deadline, self.stop, report).run()
                    os.fsync(part.fileno())
                    report(part.seek(0, os.SEEK_END), None, "verifying")
                    return resumed
                except TransferError as exc:
                    if exc.discard:
                        part.truncate(0)
                    delay = _retry_delay(exc, attempt, settings, deadline)
                    report(part.seek(0, os.SEEK_END), None, "retrying")
                    log.warning("model %s: %s: %s; retrying in %.1f s", model, source.url, exc, delay)
            attempt += 1
            self.stop.wait(delay)


def _retry_delay(exc: TransferError, attempt: int, settings: DownloadSettings, deadline: float) -> float:
    """How long to wait before the next attempt, or the error to give up with."""
    if not exc.retry:
        raise exc
    if attempt >= settings.retries:
        raise TransferError(f"{exc} (after {attempt + 1} attempts)", retry=False) from exc
    delay: float = min(_BACKOFF_MAX_S, settings.backoff_s * float(2**attempt))
    if time.monotonic() + delay > deadline:
        raise TransferError(f"{exc}; control.downloads.deadline_s leaves no time for another attempt", False) from exc
    return delay
