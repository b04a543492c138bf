"""Serves the metrics over HTTP and/or writes them for node_exporter's textfile collector.

A reader like telemetry: each scrape takes one running-state snapshot (edged/model_state.py)
and one telemetry document from its own power and health readers, under a lock, so two
scrapes at once cannot interleave the energy windows. Nothing here touches the pipelines.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

from edged.atomic_file import write_atomic
from edged.config.model import Config
from edged.errors import EdgedError
from edged.metrics.families import families
from edged.model_state import RunningState
from edged.mqtt.link import MqttLink
from edged.telemetry.readers import open_readers
from edged.telemetry.snapshot import Snapshotter

__all__ = ["MetricsService"]

log = logging.getLogger(__name__)


class _Collector:
    """prometheus_client's custom-collector protocol: ``collect()`` yields metric families."""

    def __init__(
        self, snapshot: Callable[[], RunningState], snapshotter: Snapshotter, link: Optional[MqttLink]
    ) -> None:
        self._snapshot = snapshot
        self._snapshotter = snapshotter
        self._link = link
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Any]:
        with self._lock:
            state = self._snapshot()
            doc = self._snapshotter.snapshot(state.models)
            return families(state, doc, self._link)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the journal; errors still reach the log."""


def _server_class(address: str, port: int) -> type:
    """An IPv6 address needs an AF_INET6 socket; getaddrinfo says which family ``address`` is."""
    try:
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise EdgedError(f"metrics.address: cannot resolve {address!r}: {exc.strerror}") from exc
    return type("MetricsServer", (ThreadingWSGIServer,), {"address_family": family})


class MetricsService:
    """``snapshot`` returns the running state; ``link`` is the MQTT link when there is one."""

    def __init__(self, config: Config, snapshot: Callable[[], RunningState], link: Optional[MqttLink]) -> None:
        self.settings = config.metrics
        power, health = open_readers(config.telemetry.root)
        snapshotter = Snapshotter(config.device.id, power, health, config.telemetry.window_s)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(snapshot, snapshotter, link))  # type: ignore[arg-type]
        self._server: Optional[WSGIServer] = None
        self._threads: List[threading.Thread] = []
        self._stop = threading.Event()
        self._last_error: Optional[str] = None
        self.port: Optional[int] = None  # the endpoint's port, once it listens

    def render(self) -> bytes:
        """The metrics in Prometheus' text format, as a scrape returns them."""
        return generate_latest(self.registry)

    def start(self) -> None:
        """Start the endpoint and the textfile writer that the config turns on. An endpoint
        that cannot listen is logged with the cause; the models serve regardless."""
        if self.settings.http:
            try:
                self._listen()
            except EdgedError as exc:
                log.error("%s; metrics are not served over HTTP", exc)
        if self.settings.textfile:
            thread = threading.Thread(target=self._textfile_loop, name="edged-metrics-textfile", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _listen(self) -> None:
        address = self.settings.address
        server_class = _server_class(address, self.settings.port)
        try:
            server: WSGIServer = make_server(
                address, self.settings.port, make_wsgi_app(self.registry), server_class, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise EdgedError(
                f"metrics: cannot listen on {address}:{self.settings.port} (metrics.address, metrics.port): "
                f"{exc.strerror or exc}"
            ) from exc
        server.daemon_threads = True  # type: ignore[attr-defined]
        self._server = server
        self.port = int(server.server_address[1])
        thread = threading.Thread(target=server.serve_forever, name="edged-metrics-http", daemon=True)
        thread.start()
        self._threads.append(thread)
        log.info("metrics served at http://%s:%d/metrics", address, self.port)

    def write_textfile(self) -> None:
        path = self.settings.textfile
        assert path is not None
        try:
            # node_exporter runs as its own user: the file is world-readable, as metrics are.
            # The temporary name (.edged.prom.<random>) does not end in .prom: never read.
            write_atomic(Path(path), self.render(), mode=0o644)
        except OSError as exc:
            error = f"metrics.textfile {path}: cannot write: {exc.strerror or exc}"
            if error != self._last_error:  # once per distinct cause, not every period
                log.error("%s", error)
            self._last_error = error
            return
        if self._last_error:
            log.info("metrics.textfile %s written again", path)
        self._last_error = None

    def _textfile_loop(self) -> None:
        while True:
            try:
                self.write_textfile()
            except Exception:  # metrics must never take the daemon down
                log.exception("metrics textfile failed")
            if self._stop.wait(self.settings.textfile_period_s):
                return

    def stop(self) -> None:
        """Close the endpoint; write the textfile once more, with the counters after the drain."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(2.0)
        if self.settings.textfile:
            self.write_textfile()
