"""An edge mosquitto bridged to a central one through a proxy whose uplink can be cut.

The bridge is mosquitto's own (mosquitto.conf(5), "Configuring Bridges"): a persistent
session (``cleansession false``) at QoS 1 both ways, so each side queues what the other
must get while the uplink is down and delivers it when it returns.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import List

from tests.mqtt.broker import Mosquitto, free_port


class CuttableProxy:
    """TCP from a local port to ``target``; ``cut()`` drops every connection and refuses
    new ones (accepted, then closed) until ``restore()``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._open: List[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                inbound, _ = self._server.accept()
            except OSError:
                continue
            if not self._up.is_set():
                inbound.close()
                continue
            try:
                outbound = socket.create_connection(("127.0.0.1", self.target), 2)
            except OSError:
                inbound.close()
                continue
            with self._lock:
                self._open += [inbound, outbound]
            for a, b in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._server.close()


class BridgedMosquitto:
    """``edge`` (devices connect here) bridged to ``central`` (operators connect there)."""

    def __init__(self, workdir: Path) -> None:
        self.central = Mosquitto(workdir / "central").start()
        self.proxy = CuttableProxy(self.central.port)
        bridge = [
            "connection uplink",
            f"address 127.0.0.1:{self.proxy.port}",
            "bridge_protocol_version mqttv50",
            "topic edged/# both 1",
            "topic edgectl/# out 1",
            "cleansession false",
            "restart_timeout 1 2",
            "keepalive_interval 5",
            "notifications false",
            "try_private true",
        ]
        self.edge = Mosquitto(workdir / "edge", options=["max_queued_messages 10000", *bridge])

    def start(self) -> "BridgedMosquitto":
        self.edge.start()
        return self

    def stop(self) -> None:
        self.edge.stop()
        self.proxy.close()
        self.central.stop()
