"""The service manager's side of sd_notify, for tests of the daemon's systemd integration."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, List


class NotifyListener:
    """The service manager's side of NOTIFY_SOCKET: collects every datagram with its arrival time."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.messages: List[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, value: str = "1", after: float = 0.0, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ts, fields in list(self.messages):
                if ts >= after and fields.get(key) == value:
                    return float(ts)
            time.sleep(0.05)
        raise AssertionError(f"no {key}={value} within {timeout}s; got {self.messages}")

    def times(self, key: str) -> List[float]:
        return [ts for ts, fields in list(self.messages) if fields.get(key) == "1"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
