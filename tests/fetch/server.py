"""A real HTTP(S) file server on 127.0.0.1 for download tests (Python's http.server),
with the misbehaviours downloads must survive: a connection cut mid-file, a slow server,
no Range support, no Content-Length, and TLS with a throw-away CA (optionally requiring
a client certificate)."""

from __future__ import annotations

import http.server
import re
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from tests.mqtt.broker import issue_cert

_RANGE = re.compile(r"^bytes=(\d+)-$")


def make_client_cert(ca: Dict[str, Path], folder: Path) -> Dict[str, Path]:
    """A client certificate signed by the CA of tests/mqtt/broker.py's make_ca."""
    return issue_cert(ca, folder, "client", "/CN=edged device")


class FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, root: Path, tls: Optional[Dict[str, Path]] = None, client_ca: Optional[Path] = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.scheme = "https" if tls else "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls["cert"]), str(tls["key"]))
            if client_ca is not None:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(str(client_ca))
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.stopping = threading.Event()
        self.requests: List[Tuple[str, Optional[str]]] = []  # (path, Range header)
        self.cut_after: Optional[int] = None  # close after this many body bytes ...
        self.cuts = 0  # ... for this many more responses
        self.delay_s = 0.0  # before answering
        self.chunk = 16384
        self.chunk_delay_s = 0.0  # between chunks
        self.ranges = True
        self.content_length = True
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}/{name}"

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # refused handshakes and cut connections are what these tests cause


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # in this handler's thread, not the accept loop
        super().setup()

    def do_GET(self) -> None:
        server = self.server
        rng = self.headers.get("Range")
        server.requests.append((self.path, rng))
        if server.delay_s and server.stopping.wait(server.delay_s):
            return
        path = server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        match = _RANGE.match(rng or "")
        start = int(match.group(1)) if match and server.ranges else 0
        if start >= len(data) and start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if server.content_length:
            self.send_header("Content-Length", str(len(data) - start))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        body = data[start:]
        if server.cuts > 0 and server.cut_after is not None:
            server.cuts -= 1
            self.wfile.write(body[: server.cut_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        for at in range(0, len(body), server.chunk):
            if server.chunk_delay_s and server.stopping.wait(server.chunk_delay_s):
                return
            self.wfile.write(body[at : at + server.chunk])
            self.wfile.flush()
