"""The tests' own MQTT client: subscribes and records what arrives (paho 1.6 or 2.x)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from edged.mqtt.compat import import_paho, new_client


class Observer:
    def __init__(self, port: int, topic: str = "#", v5: bool = True, **tls: Any) -> None:
        mqtt = import_paho()
        self.client = new_client(mqtt, f"observer-{time.monotonic_ns()}", v5)
        if tls:
            self.client.tls_set(**tls)
        self.messages: List[Tuple[str, bytes, bool, Any]] = []
        self._lock = threading.Lock()
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect("127.0.0.1", port, 30)
        self.client.subscribe(topic, 1)
        self.client.loop_start()
        assert self._subscribed.wait(10), "observer could not subscribe"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(
                (message.topic, bytes(message.payload), bool(message.retain), getattr(message, "properties", None))
            )

    def wait_for(self, predicate: Callable[[str, Any], bool], timeout: float = 10.0) -> Optional[Tuple[str, Any]]:
        """First (topic, decoded JSON payload) matching ``predicate``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self._lock:
                batch = self.messages[seen:]
            for topic, payload, _, _ in batch:
                seen += 1
                try:
                    doc = json.loads(payload)
                except ValueError:
                    doc = payload
                if predicate(topic, doc):
                    return topic, doc
            time.sleep(0.02)
        return None

    def payloads(self, topic: str) -> List[Any]:
        with self._lock:
            return [json.loads(p) for t, p, _, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
