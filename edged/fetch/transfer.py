"""One HTTP(S) attempt at a file: GET (with ``Range`` to resume a partial file), size
checks against the declared size, the size limit and the free disk space, then the body
appended to the partial file. Standard library only (http.client + ssl).

HTTP facts used here (RFC 9110): a server that honours ``Range: bytes=N-`` answers 206
with ``Content-Range: bytes N-M/TOTAL`` (section 14.4); one that ignores it answers 200
with the whole file (section 14.2), so the partial file starts again; 416 means the range
starts at or past the end (section 15.5.17). 408, 429 and 5xx are worth another attempt;
other 4xx are not.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import IO, Callable, Optional, Tuple

from edged import __version__
from edged.errors import EdgedError
from edged.fetch.settings import DownloadSettings

__all__ = ["TransferError", "Transfer", "tls_context"]

_CHUNK = 1 << 16
_MAX_REDIRECTS = 5
_RETRY_STATUSES = (408, 429)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class TransferError(EdgedError):
    """A failed attempt. ``retry``: another attempt may succeed (connection lost, timeout,
    server error); ``discard``: the partial file is worthless (disk full, wrong content)."""

    def __init__(self, message: str, retry: bool, discard: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.discard = discard


def tls_context(settings: DownloadSettings) -> ssl.SSLContext:
    """The system CA store, or only ``ca_file`` when one is configured; a client
    certificate when one is configured. Hostname checking stays on."""
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TransferError(f"control.downloads: cannot load the TLS files: {exc}", retry=False) from exc
    return context


def _mb(n: int) -> str:
    return f"{n} bytes" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _write_all(part: IO[bytes], data: bytes) -> None:
    # The partial file is unbuffered, so a full disk fails here and not at a later flush;
    # an unbuffered write may take only part of the data.
    view = memoryview(data)
    while view:
        written = part.write(view)
        view = view[written or 0 :]


@dataclass
class Transfer:
    """One attempt at ``url`` into ``part`` (opened unbuffered, for reading and writing)."""

    url: str
    part: IO[bytes]
    settings: DownloadSettings
    context: ssl.SSLContext
    expected_size: Optional[int]  # declared in the config
    deadline: float  # time.monotonic() by which everything must be done
    stop: threading.Event
    on_bytes: Callable[[int, Optional[int]], None]  # (bytes in the partial file, total if known)

    def run(self) -> None:
        offset = self.part.seek(0, os.SEEK_END)
        url = self.url
        for _ in range(_MAX_REDIRECTS + 1):
            conn, response = self._request(url, offset)
            try:
                location = response.getheader("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    url = urllib.parse.urljoin(url, location)
                    continue
                self._receive(response, offset)
                return
            finally:
                conn.close()
        raise TransferError(f"more than {_MAX_REDIRECTS} redirects", retry=False)

    def _connection(self, url: str) -> Tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        timeout = self.settings.timeout_s
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout, context=self.context
            )
        elif scheme == "http" and self.settings.allow_http:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        elif scheme == "http":
            raise TransferError(f"{url}: http:// is refused (control.downloads.allow_http is false)", retry=False)
        else:
            raise TransferError(f"{url}: unsupported scheme {scheme!r}", retry=False)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return conn, target

    def _request(self, url: str, offset: int) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn, target = self._connection(url)
        headers = {"User-Agent": f"edged/{__version__}", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            conn.request("GET", target, headers=headers)
            return conn, conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise TransferError(f"TLS: the server's certificate is not trusted: {exc.verify_message}", False) from exc
        except ssl.SSLError as exc:
            conn.close()
            raise TransferError(f"TLS: {exc.reason or exc}", retry=False) from exc
        except socket.timeout as exc:
            conn.close()
            raise TransferError(f"timed out: no answer within {self.settings.timeout_s:g} s", retry=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransferError(f"connection failed: {exc}", retry=True) from exc

    def _total(self, response: http.client.HTTPResponse, offset: int) -> Tuple[int, Optional[int]]:
        """Where the body starts in the file, and the file's size when the server says."""
        length = response.getheader("Content-Length")
        body = int(length) if length and length.isdigit() else None
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.getheader("Content-Range") or "")
            if match is None or int(match.group(1)) != offset:
                raise TransferError("the server answered a different range; starting again", retry=True, discard=True)
            total = match.group(3)
            return offset, int(total) if total != "*" else None
        if response.status == 200:
            return 0, body
        if response.status == 416:
            raise TransferError("the server refused to resume; starting again", retry=True, discard=True)
        retry = response.status in _RETRY_STATUSES or response.status >= 500
        raise TransferError(f"HTTP {response.status} {response.reason}", retry=retry)

    def _check_size(self, start: int, total: Optional[int]) -> None:
        declared, limit = self.expected_size, self.settings.max_bytes
        if total is not None and declared is not None and total != declared:
            raise TransferError(f"the server announces {total} bytes; the config declares size {declared}", False)
        if total is not None and total > limit:
            raise TransferError(
                f"the server announces {_mb(total)}, over control.downloads.max_bytes ({_mb(limit)})", False
            )
        needed = (total if total is not None else declared or 0) - start
        fs = os.fstatvfs(self.part.fileno())
        free = fs.f_bavail * fs.f_frsize
        if needed + self.settings.reserve_bytes > free:
            raise TransferError(
                f"not enough free disk space in {self.settings.store_dir}: {_mb(needed)} to download, {_mb(free)} free "
                f"(control.downloads.reserve_mb keeps {_mb(self.settings.reserve_bytes)})",
                retry=False,
            )

    def _receive(self, response: http.client.HTTPResponse, offset: int) -> None:
        start, total = self._total(response, offset)
        self._check_size(start, total)
        self.part.seek(start)
        self.part.truncate()
        limit = min(x for x in (total, self.expected_size, self.settings.max_bytes) if x is not None)
        done = start
        self.on_bytes(done, total)
        while True:
            if self.stop.is_set():
                raise TransferError("stopped: the daemon is shutting down", retry=False)
            if time.monotonic() > self.deadline:
                raise TransferError(
                    f"control.downloads.deadline_s ({self.settings.deadline_s:g} s) passed after {_mb(done)}", False
                )
            try:
                chunk = response.read1(min(_CHUNK, limit + 1 - done))  # what has arrived, not a full chunk
            except socket.timeout as exc:
                raise TransferError(f"timed out: no data for {self.settings.timeout_s:g} s", retry=True) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise TransferError(f"connection lost after {_mb(done)}: {exc}", retry=True) from exc
            if not chunk:
                break
            done += len(chunk)
            if done > limit:
                what = "declared size" if limit == self.expected_size else "control.downloads.max_bytes"
                raise TransferError(f"the file is larger than its {what} ({_mb(limit)})", False, discard=True)
            try:
                _write_all(self.part, chunk)
            except OSError as exc:
                full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                reason = "disk full" if full else "cannot write"
                raise TransferError(f"{reason} after {_mb(done - len(chunk))}: {exc.strerror}", False, True) from exc
            self.on_bytes(done, total)
        if total is not None and done < total:
            raise TransferError(f"the connection closed after {_mb(done)} of {_mb(total)}", retry=True)
