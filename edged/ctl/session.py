"""The operator side's MQTT session: connect with the broker options, subscribe, publish
with MQTT 5 request/response properties, and hand received messages to the caller
through a queue (nothing runs inside paho's callbacks but the hand-over)."""

from __future__ import annotations

import queue
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from edged.errors import EdgedError

__all__ = ["BrokerOptions", "Received", "Session", "SessionError"]


class SessionError(EdgedError):
    """The broker could not be reached or refused the session."""


@dataclass(frozen=True)
class BrokerOptions:
    host: str = "localhost"
    port: int = 1883
    protocol: str = "5"  # "5" or "3.1.1"
    username: Optional[str] = None
    password: Optional[str] = None
    tls: bool = False
    cafile: Optional[str] = None
    certfile: Optional[str] = None
    keyfile: Optional[str] = None
    insecure: bool = False
    keepalive_s: int = 30


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retained: bool
    correlation_data: Optional[bytes] = None


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise SessionError("edgectl needs paho-mqtt: apt install python3-paho-mqtt (or pip install paho-mqtt)") from exc
    return mqtt


class Session:
    def __init__(self, options: BrokerOptions, client_id: str = "") -> None:
        mqtt = _paho()
        self.options = options
        self.v5 = options.protocol == "5"
        protocol = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        kwargs: Any = {"client_id": client_id, "protocol": protocol}
        if not self.v5:
            kwargs["clean_session"] = True
        # paho 2.x wants the callback API version first; 1.6 has no such enum.
        api = getattr(mqtt, "CallbackAPIVersion", None)
        self._client = mqtt.Client(api.VERSION2, **kwargs) if api else mqtt.Client(**kwargs)
        if options.username:
            self._client.username_pw_set(options.username, options.password)
        if options.tls or options.cafile:
            self._client.tls_set(
                ca_certs=options.cafile, certfile=options.certfile, keyfile=options.keyfile, cert_reqs=ssl.CERT_REQUIRED
            )
            self._client.tls_insecure_set(options.insecure)
        self.messages: queue.Queue[Received] = queue.Queue()
        self._connected = threading.Event()
        self._refused: Optional[str] = None
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        code = getattr(rc, "value", rc)
        if code == 0:
            self._connected.set()
        else:
            self._refused = str(rc)
            self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        props = getattr(msg, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        self.messages.put(Received(msg.topic, bytes(msg.payload), bool(msg.retain), correlation))

    def connect(self, timeout_s: float = 10.0) -> None:
        o = self.options
        try:
            self._client.connect(o.host, o.port, o.keepalive_s)
        except (OSError, ValueError) as exc:
            raise SessionError(f"cannot connect to {o.host}:{o.port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self.close()
            raise SessionError(f"{o.host}:{o.port}: no CONNACK within {timeout_s:g}s")
        if self._refused:
            self.close()
            raise SessionError(f"{o.host}:{o.port}: connection refused: {self._refused}")

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self._client.subscribe(topic, qos)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        response_topic: Optional[str] = None,
        correlation_data: Optional[bytes] = None,
        timeout_s: float = 10.0,
    ) -> None:
        properties = None
        if self.v5 and response_topic:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = response_topic
            if correlation_data is not None:
                properties.CorrelationData = correlation_data
        info = self._client.publish(topic, payload, qos=qos, properties=properties)
        deadline = time.monotonic() + timeout_s
        while qos > 0 and not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.01)
        if qos > 0 and not info.is_published():
            raise SessionError(f"{topic}: the broker did not acknowledge the publish within {timeout_s:g}s")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
