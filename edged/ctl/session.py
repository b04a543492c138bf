"""edgectl's MQTT session: connect with the operator's broker options, subscribe (again
after every reconnect), publish with MQTT 5 request/response properties and wait for the
broker's acknowledgement, and queue what arrives for the command to read.

The daemon does not use this: its control plane rides on the daemon's one MqttLink
(edged/mqtt/link.py), which never blocks. An operator tool wants the opposite: block until
connected, fail fast with a message naming the broker.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

from edged.errors import ConfigError, EdgedError
from edged.mqtt.compat import connect_options, import_paho, message_properties, new_client, publish_properties
from edged.mqtt.security import read_password

__all__ = ["BrokerOptions", "Received", "Session", "SessionError", "options_from_section"]


class SessionError(EdgedError):
    """The broker could not be reached or refused the session."""


@dataclass(frozen=True)
class BrokerOptions:
    host: str = "localhost"
    port: int = 1883
    protocol: str = "auto"  # "auto" (5, else 3.1.1), "5" or "3.1.1"
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
    response_topic: Optional[str] = None

    def result_for(self, request_id: str) -> Optional[Dict[str, Any]]:
        """The payload as a JSON result answering ``request_id``; None for anything else
        (another request's result, or not JSON)."""
        try:
            result = json.loads(self.payload)
        except ValueError:
            return None
        return result if isinstance(result, dict) and result.get("id") == request_id else None


class Session:
    def __init__(
        self,
        options: BrokerOptions,
        client_id: str = "",
        on_message: Optional[Callable[[Received], None]] = None,
    ) -> None:
        try:
            mqtt = import_paho()
        except EdgedError as exc:
            raise SessionError(str(exc)) from exc
        self.options = options
        self.v5 = options.protocol != "3.1.1"
        self._mqtt = mqtt
        self._client_id = client_id
        self.messages: queue.Queue[Received] = queue.Queue()
        self._handler = on_message or self.messages.put
        self._subscriptions: Dict[str, int] = {}
        self._connected = threading.Event()
        self._refused: Optional[str] = None
        self._closed_early = False
        self.note: Optional[str] = None  # what edgectl should tell the operator about the session
        self._client = self._new_client()

    def _new_client(self) -> Any:
        options = self.options
        client = new_client(self._mqtt, self._client_id, self.v5)
        if options.username:
            client.username_pw_set(options.username, options.password)
        if options.tls or options.cafile:
            # Our own context: paho 1.6's tls_set builds one with a deprecated protocol constant.
            try:
                context = ssl.create_default_context(cafile=options.cafile)
                if options.certfile:
                    context.load_cert_chain(options.certfile, options.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise SessionError(f"TLS files (cafile/certfile/keyfile): {exc}") from exc
            if options.insecure:
                context.check_hostname = False
            client.tls_set_context(context)
        client.reconnect_delay_set(0.2, 5)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        code = getattr(rc, "value", rc)
        if code == 0:
            # After a reconnect to a broker that lost the session, subscribe again;
            # paho does not. Copy: subscribe() may run concurrently on another thread.
            for topic, qos in list(self._subscriptions.items()):
                client.subscribe(topic, qos)
        else:
            self._refused = str(rc)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        if not self._connected.is_set():
            self._closed_early = True
            self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        props = message_properties(msg)
        self._handler(
            Received(
                msg.topic,
                bytes(msg.payload),
                bool(msg.retain),
                props.get("correlation_data"),
                props.get("response_topic"),
            )
        )

    def connect(self, timeout_s: float = 10.0) -> None:
        o = self.options
        try:
            self._attempt(timeout_s)
        except SessionError as exc:
            # As edged's protocol "auto" (edged/mqtt/link.py): RabbitMQ 3.10 closes an MQTT 5
            # CONNECT without a CONNACK; 3.1.1 brokers may refuse it with code 1.
            if o.protocol != "auto" or not self.v5 or not (self._closed_early or self._refused_protocol):
                raise
            self.v5 = False
            self._client = self._new_client()
            self._attempt(timeout_s)
            self.note = f"{o.host}:{o.port}: {exc.args[0].split(': ', 1)[1]}; connected with MQTT 3.1.1"

    @property
    def _refused_protocol(self) -> bool:
        return bool(self._refused) and "protocol" in str(self._refused).lower()

    def _attempt(self, timeout_s: float) -> None:
        o = self.options
        self._connected.clear()
        self._closed_early = False
        self._refused = None
        try:
            self._client.connect(o.host, o.port, o.keepalive_s, **connect_options(self.v5, persistent=False))
        except (OSError, ValueError) as exc:
            raise SessionError(f"cannot connect to {o.host}:{o.port}: {exc}") from exc
        self._client.loop_start()
        version = "5" if self.v5 else "3.1.1"
        if not self._connected.wait(timeout_s):
            self.close()
            raise SessionError(f"{o.host}:{o.port}: no CONNACK within {timeout_s:g}s (MQTT {version})")
        if self._closed_early:
            self.close()
            raise SessionError(
                f"{o.host}:{o.port}: the broker closed the connection on an MQTT {version} CONNECT without a CONNACK"
            )
        if self._refused:
            self.close()
            raise SessionError(f"{o.host}:{o.port}: connection refused: {self._refused}")

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected())

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self._subscriptions[topic] = qos
        self._client.subscribe(topic, qos)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        response_topic: Optional[str] = None,
        correlation_data: Optional[bytes] = None,
        retain: bool = False,
        wait_s: float = 10.0,
    ) -> None:
        """Publish; with QoS > 0 wait up to ``wait_s`` for the broker's acknowledgement
        (0: do not wait; paho keeps the message and sends it after a reconnect)."""
        properties = publish_properties(self._mqtt, None, response_topic, correlation_data) if self.v5 else None
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos == 0 or wait_s <= 0:
            return
        deadline = time.monotonic() + wait_s
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not info.is_published():
            raise SessionError(f"{topic}: the broker did not acknowledge the publish within {wait_s:g}s")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def options_from_section(section: Mapping[str, Any]) -> BrokerOptions:
    """Broker options from an ``mqtt`` config section; TLS and credential keys are read
    under the common spellings (``tls`` may be true or a mapping of file names)."""
    tls = section.get("tls")
    tls_doc: Mapping[str, Any] = tls if isinstance(tls, dict) else {}

    def first(*keys: str) -> Any:
        for key in keys:
            for source in (section, tls_doc):
                if source.get(key) is not None:
                    return source[key]
        return None

    password = first("password")
    if password is None and section.get("password_file"):
        try:
            password = read_password(str(section["password_file"]))
        except ConfigError as exc:
            raise SessionError(str(exc)) from exc
    protocol = str(section.get("protocol", "auto"))
    return BrokerOptions(
        host=str(section.get("host", "localhost")),
        port=int(section.get("port", 1883)),
        protocol=protocol if protocol in ("3.1.1", "5") else "auto",
        username=first("username"),
        password=password,
        tls=bool(tls),
        cafile=first("cafile", "ca_file", "ca"),
        certfile=first("certfile", "cert_file", "cert"),
        keyfile=first("keyfile", "key_file", "key"),
        keepalive_s=int(section.get("keepalive_s", 30)),
    )
