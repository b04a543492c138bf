"""Answers fleet presence queries: the fleet view that needs no retained messages.

``edgectl devices`` publishes a query on ``edged/fleet/presence/query``; every connected device
answers with what it is running. Retained ``status`` messages alone cannot list a fleet
on every broker: RabbitMQ 3.10 delivers them only to exact-topic subscriptions, never to
``edged/+/status``, and keeps them per cluster node (rabbitmq-server issues 8096, 8824).
A live query and its live answers cross wildcards, nodes and bridges alike.

The answer goes to the query's MQTT 5 Response Topic, else (MQTT 3.1.1) to
``edged/<device>/presence``. A response topic under ``edged/`` or with wildcards is not
used: a query must not make devices publish into another device's control topics.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Dict, Optional

from edged.model_state import RunningState
from edged.mqtt.link import Message, MqttLink
from edged.mqtt.topics import ROOT

__all__ = ["QUERY_TOPIC", "PresenceResponder", "presence_topic"]

log = logging.getLogger(__name__)

QUERY_TOPIC = f"{ROOT}/fleet/presence/query"
# Answers per second a device gives, so a flood of queries costs the broker little.
_MAX_ANSWERS_PER_S = 5.0


def presence_topic(device_id: str) -> str:
    return f"{ROOT}/{device_id}/presence"


def _usable_response_topic(topic: Optional[str]) -> Optional[str]:
    if not topic or topic.startswith(f"{ROOT}/") or "+" in topic or "#" in topic:
        return None
    return topic


class PresenceResponder:
    def __init__(
        self,
        link: MqttLink,
        running: Callable[[], RunningState],
        telemetry_at: Callable[[], Optional[float]],
        software_version: str,
    ) -> None:
        self.link = link
        self._running = running
        self._telemetry_at = telemetry_at
        self._version = software_version
        self._lock = threading.Lock()
        self._allowance = _MAX_ANSWERS_PER_S
        self._checked = time.monotonic()
        self.answered = 0
        self.refused = 0

    def attach(self) -> None:
        """Subscribe (before the link starts: subscriptions go out on every connection).
        QoS 0: a query is only worth answering while it is asked, never queued for later."""
        self.link.subscribe(QUERY_TOPIC, self._on_query, qos=0)

    def _admit(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._allowance = min(_MAX_ANSWERS_PER_S, self._allowance + (now - self._checked) * _MAX_ANSWERS_PER_S)
            self._checked = now
            if self._allowance < 1.0:
                return False
            self._allowance -= 1.0
            return True

    def _on_query(self, message: Message) -> None:
        try:
            query: Any = json.loads(message.payload.decode("utf-8")) if message.payload else {}
        except (UnicodeDecodeError, ValueError):
            query = None
        if not isinstance(query, dict):
            self.refused += 1
            log.debug("presence: ignoring a query that is not a JSON object")
            return
        answer = self.answer(query)
        if answer is None:
            return
        if not self._admit():
            self.refused += 1
            return
        topic = _usable_response_topic(message.response_topic) or presence_topic(self.link.topics.device_id)
        self.link.publish(topic, answer, qos=1, correlation_data=message.correlation_data)
        self.answered += 1

    def answer(self, query: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """This device's answer to ``query``, or None when its ``group`` filter excludes it."""
        running = self._running()
        groups = list(running.config.device.groups)
        wanted = query.get("group")
        if isinstance(wanted, str) and wanted not in groups:
            return None
        models = {name: model.state for name, model in running.models.items()}
        serving = all(model.serving for model in running.models.values())
        counters = self.link.counters
        doc: Dict[str, Any] = {
            "device": self.link.topics.device_id,
            "state": "online" if serving else "degraded",
            "software": self._version,
            "version": running.version,
            "source": running.source,
            "groups": groups,
            "models": models,
            "telemetry_ts": self._telemetry_at(),
            "protocol": counters.protocol,
            "instance": self.link.guard.instance,
            "client_id_conflicts": counters.client_id_conflicts,
            "ts": time.time(),
        }
        if isinstance(query.get("id"), str):
            doc["id"] = query["id"]
        return doc
