"""One MQTT connection per daemon: never blocks its callers, reconnects by itself.

Callers hand messages to a bounded buffer (the oldest are dropped, and counted, while
the broker is unreachable); a network thread owns the paho client, connects with
jittered exponential backoff, publishes the birth message and drains the buffer.
Incoming messages are handed to a dispatcher thread, so a slow handler (a config push
that builds plans) never stalls keep-alives. Nothing is published from inside paho
callbacks (paho's own locks are held there; see DESIGN.md §9).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

from edged.config.model import MqttConfig
from edged.mqtt.compat import (
    connect_options,
    disconnect_reason,
    import_paho,
    message_properties,
    new_client,
    publish_properties,
    reason_value,
)
from edged.mqtt.security import apply_security
from edged.mqtt.takeover import SESSION_TAKEN_OVER, TakeoverGuard
from edged.mqtt.topics import Topics

__all__ = ["Message", "LinkCounters", "MqttLink", "encode"]

log = logging.getLogger(__name__)

Payload = Union[bytes, str, Dict[str, Any], List[Any]]
Handler = Callable[["Message"], None]
_CONNACK_TIMEOUT_S = 10.0
# CONNACK codes meaning "this broker does not speak MQTT 5" (3.1.1's 1, MQTT 5's 132).
_UNSUPPORTED_PROTOCOL = {1, 132}
_AUTH_FAILURES = {4, 5, 134, 135}
# How long a connection that checks for another holder of its client id waits for the
# retained status after the broker acknowledged the subscription (edged/mqtt/takeover.py).
_STATUS_GRACE_S = 0.25
_STATUS_WAIT_S = 2.0


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool = False
    response_topic: Optional[str] = None
    correlation_data: Optional[bytes] = None

    def json(self) -> Any:
        return json.loads(self.payload.decode("utf-8"))


@dataclass
class LinkCounters:
    connects: int = 0
    connection_failures: int = 0
    published: int = 0
    dropped_offline: int = 0
    dropped_inbox: int = 0
    received: int = 0
    last_error: Optional[str] = None
    protocol: str = ""
    handler_errors: int = 0
    fallbacks: int = 0  # MQTT 5 -> 3.1.1 switches of protocol "auto"
    client_id_conflicts: int = 0  # another connection held this client id (edged/mqtt/takeover.py)


def encode(payload: Payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


_Outgoing = Tuple[str, bytes, int, bool, Optional[int], Optional[str], Optional[bytes]]


class MqttLink:
    def __init__(
        self,
        config: MqttConfig,
        device_id: str,
        birth: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.config = config
        self.topics = Topics(device_id)
        self.client_id = config.client_id or f"edged-{device_id}"
        self.birth = dict(birth or {})
        self.counters = LinkCounters()
        self.connected = threading.Event()
        self._outbox: Deque[_Outgoing] = deque()
        self._outbox_lock = threading.Lock()
        self._inbox: "queue.Queue[Optional[Message]]" = queue.Queue(maxsize=1024)
        self._handlers: List[Tuple[str, int, Handler]] = []
        self._connect_hooks: List[Callable[[], None]] = []
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._connack: Optional[Tuple[int, str]] = None
        self._disconnect_reason: Optional[int] = None
        self._suback = threading.Event()
        self._use_v5 = config.protocol in ("auto", "5")
        self._fell_back = False
        self._mqtt = import_paho()
        self.guard = TakeoverGuard()
        self.birth.setdefault("instance", self.guard.instance)

    # -- public API ----------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (("mqtt-net", self._network_loop), ("mqtt-dispatch", self._dispatch_loop)):
            thread = threading.Thread(target=target, name=f"edged-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish a clean 'offline' status if connected, then close."""
        self._stop.set()
        self._inbox.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def publish(
        self,
        topic: str,
        payload: Payload,
        qos: int = 0,
        retain: bool = False,
        expiry_s: Optional[int] = None,
        response_topic: Optional[str] = None,
        correlation_data: Optional[bytes] = None,
    ) -> None:
        """Queue a message; never blocks. Beyond ``buffer_messages`` the oldest is dropped."""
        item = (topic, encode(payload), qos, retain, expiry_s, response_topic, correlation_data)
        with self._outbox_lock:
            if len(self._outbox) >= self.config.buffer_messages:
                self._outbox.popleft()
                self.counters.dropped_offline += 1
            self._outbox.append(item)

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Call ``handler`` (on the dispatcher thread) for each message matching the filter.
        Subscribe before :meth:`start`: subscriptions are sent on each connection."""
        self._handlers.append((topic_filter, qos, handler))

    def on_connect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` on the dispatcher thread after every (re)connection."""
        self._connect_hooks.append(hook)

    def pending(self) -> int:
        with self._outbox_lock:
            return len(self._outbox)

    # -- network thread ------------------------------------------------------------------

    def _status(self, state: str, **extra: Any) -> bytes:
        doc: Dict[str, Any] = {"state": state, "ts": time.time()}
        doc.update(extra)
        return encode(doc)

    @property
    def persistent(self) -> bool:
        # A link that subscribes (the control plane) keeps its session, so the broker queues
        # QoS 1 pushes while the device is offline or the broker restarts.
        return bool(self._handlers)

    def _new_client(self) -> Any:
        client = new_client(self._mqtt, self.client_id, self._use_v5, self.persistent)
        apply_security(client, self.config)
        client.will_set(self.topics.status, self._status("offline", reason="connection lost"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        self._connack = (reason_value(rc), str(rc) if not isinstance(rc, int) else self._mqtt.connack_string(rc))

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        self._disconnect_reason = disconnect_reason(args)

    def _on_subscribe(self, client: Any, userdata: Any, *args: Any) -> None:
        self._suback.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == self.topics.status:
            self.guard.on_status(bytes(message.payload), bool(message.retain))
            return
        props = message_properties(message)
        msg = Message(message.topic, bytes(message.payload), bool(message.retain), **props)
        # A full inbox holds the network thread back instead of dropping: TCP pushes back
        # to the broker, which queues for this session (its max_queued_messages), so a burst
        # of junk cannot silently cost a later valid push its delivery.
        while not self._stop.is_set():
            try:
                self._inbox.put(msg, timeout=0.1)
                self.counters.received += 1
                return
            except queue.Full:
                continue
        self.counters.dropped_inbox += 1

    def _fail(self, reason: str) -> None:
        self.counters.connection_failures += 1
        if reason != self.counters.last_error:
            log.error("mqtt %s:%d: %s", self.config.host, self.config.port, reason)
        else:
            log.debug("mqtt %s:%d: still failing: %s", self.config.host, self.config.port, reason)
        self.counters.last_error = reason

    def _backoff(self, attempt: int) -> None:
        cap = min(self.config.backoff_max_s, 0.5 * (2 ** min(attempt, 16)))
        # Jitter spreads a fleet's reconnections after a broker restart.
        self._stop.wait(cap / 2 + random.uniform(0, cap / 2))

    def _connect(self) -> Optional[Any]:
        client = self._new_client()
        self._connack = None
        try:
            options = connect_options(self._use_v5, self.persistent)
            client.connect(self.config.host, self.config.port, self.config.keepalive_s, **options)
        except ssl.SSLCertVerificationError as exc:
            detail = f"certificate verify failed: {exc.verify_message}"
            raise ConnectionError(f"TLS handshake failed: {detail} (check mqtt.tls.ca_file)") from exc
        except ssl.SSLError as exc:
            raise ConnectionError(f"TLS handshake failed: {exc.reason or exc}") from exc
        deadline = time.monotonic() + _CONNACK_TIMEOUT_S
        closed = False
        while self._connack is None and time.monotonic() < deadline and not self._stop.is_set():
            if client.loop(0.1) != 0:
                closed = True
                break
        if self._connack is None:
            client.disconnect()
            if closed and self.config.protocol == "auto":
                # RabbitMQ 3.10 closes the connection on an MQTT 5 CONNECT without any
                # CONNACK (it cannot parse the frame; MQTT 5 arrived in 3.13). A 3.1.1
                # CONNECT that is closed alike goes back to 5: the first close was not
                # about the protocol.
                raise self._switch_protocol("the broker closed the connection without a CONNACK")
            if closed:
                raise ConnectionError(f"the broker closed the connection without a CONNACK (MQTT {self._protocol()})")
            raise ConnectionError(f"no CONNACK from the broker within {_CONNACK_TIMEOUT_S:g}s")
        code, text = self._connack
        if code == 0:
            return client
        client.disconnect()
        if code in _UNSUPPORTED_PROTOCOL and self._use_v5 and self.config.protocol == "auto":
            raise self._switch_protocol(f"the broker refused MQTT 5: {text}")
        if code in _AUTH_FAILURES:
            raise ConnectionError(f"broker refused the credentials: {text} (check mqtt.username / mqtt.password_file)")
        raise ConnectionError(f"broker refused the connection: {text}")

    def _protocol(self) -> str:
        return "5" if self._use_v5 else "3.1.1"

    def _switch_protocol(self, why: str) -> ConnectionError:
        was = self._protocol()
        self._use_v5 = not self._use_v5
        self._fell_back = not self._use_v5
        self.counters.fallbacks += int(self._fell_back)
        return ConnectionError(f"{why} on an MQTT {was} CONNECT; trying MQTT {self._protocol()} (protocol auto)")

    def _network_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                client = self._connect()
            except (OSError, ConnectionError) as exc:
                self._fail(str(exc) if isinstance(exc, ConnectionError) else f"cannot connect: {exc}")
                attempt += 1
                self._backoff(attempt)
                continue
            if client is None:
                break
            attempt = 0
            if self.guard.armed and not self._may_hold(client):
                self._hold_off()
                continue
            self._serve(client)
            if not self._stop.is_set():
                self.guard.armed = True
                if self._disconnect_reason == SESSION_TAKEN_OVER:
                    self.guard.taken_over += 1
                    self._report_conflict("the broker handed this session to a new connection (MQTT 5 reason 0x8E)")
                self._backoff(1)

    def _may_hold(self, client: Any) -> bool:
        """After a lost connection: False when another instance is online under this
        client id (edged/mqtt/takeover.py); this connection then closes before its birth."""
        self.guard.begin_check()
        self._suback.clear()
        client.subscribe(self.topics.status, 1)
        deadline = time.monotonic() + _STATUS_WAIT_S
        grace: Optional[float] = None
        while not self.guard.wait_status(0) and time.monotonic() < min(deadline, grace or deadline):
            if client.loop(0.05) != 0:
                return True  # lost again: the outer loop reconnects and checks again
            if grace is None and self._suback.is_set():
                grace = time.monotonic() + _STATUS_GRACE_S
        if not self.guard.foreign_online:
            return True
        client.unsubscribe(self.topics.status)
        client.disconnect()
        client.loop(0.1)
        self.guard.yielded += 1
        self._report_conflict("its retained status is online from another instance")
        return False

    def _report_conflict(self, evidence: str) -> None:
        self.counters.client_id_conflicts = self.guard.conflicts()
        reason = f"{self.guard.describe(self.client_id)}; {evidence}"
        self.counters.last_error = reason
        self.birth["client_id_conflicts"] = self.counters.client_id_conflicts
        # The first report is an error; the rest stay in the log at warning level, so a
        # conflict that lasts stays visible without flooding it.
        level = logging.ERROR if self.counters.client_id_conflicts == 1 else logging.WARNING
        log.log(level, "mqtt %s:%d: %s", self.config.host, self.config.port, reason)

    def _hold_off(self) -> None:
        """Wait ``backoff_max_s`` (jittered) before looking again: the other holder keeps
        its session instead of both knocking each other off every second."""
        hold = self.config.backoff_max_s
        self._stop.wait(hold / 2 + random.uniform(0, hold / 2))

    def _serve(self, client: Any) -> None:
        self.counters.connects += 1
        self.counters.protocol = self._protocol()
        self.counters.last_error = None
        self._disconnect_reason = None
        fallback = " after the broker refused MQTT 5" if self._fell_back else ""
        log.info(
            "mqtt %s:%d: connected (MQTT %s%s)", self.config.host, self.config.port, self.counters.protocol, fallback
        )
        client.publish(self.topics.status, self._status("online", **self.birth), qos=1, retain=True)
        if self.guard.armed:
            client.unsubscribe(self.topics.status)
        for topic_filter, qos, _ in self._handlers:
            client.subscribe(topic_filter, qos)
        self.connected.set()
        self._inbox.put(Message("$edged/connected", b""))
        try:
            while not self._stop.is_set():
                self._drain(client)
                if client.loop(0.05) != 0:
                    log.warning("mqtt %s:%d: connection lost", self.config.host, self.config.port)
                    return
            self._drain(client)
            info = client.publish(self.topics.status, self._status("offline", reason="stopped"), qos=1, retain=True)
            deadline = time.monotonic() + 1.0
            while not info.is_published() and time.monotonic() < deadline:
                client.loop(0.05)
            client.disconnect()
        finally:
            self.connected.clear()

    def _drain(self, client: Any) -> None:
        while True:
            with self._outbox_lock:
                if not self._outbox:
                    return
                topic, payload, qos, retain, expiry, response, correlation = self._outbox.popleft()
            props = publish_properties(self._mqtt, expiry, response, correlation) if self._use_v5 else None
            if props is None:
                client.publish(topic, payload, qos=qos, retain=retain)
            else:
                client.publish(topic, payload, qos=qos, retain=retain, properties=props)
            self.counters.published += 1

    # -- dispatcher thread ---------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while True:
            message = self._inbox.get()
            if message is None or self._stop.is_set():
                return
            if message.topic == "$edged/connected":
                callbacks: List[Callable[[], None]] = list(self._connect_hooks)
                for hook in callbacks:
                    self._call(hook)
                continue
            for topic_filter, _, handler in list(self._handlers):
                if self._mqtt.topic_matches_sub(topic_filter, message.topic):
                    self._call(handler, message)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a handler bug must not kill the connection
            self.counters.handler_errors += 1
            log.exception("mqtt handler %s failed", getattr(fn, "__name__", fn))
