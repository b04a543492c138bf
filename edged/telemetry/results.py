"""Inference results to ``edged/<device_id>/models/<name>/results``, rate-limited."""

from __future__ import annotations

import time
from typing import Any, Dict

from edged.mqtt.link import MqttLink

__all__ = ["ResultsPublisher"]


class ResultsPublisher:
    """Called by a pipeline's output thread for every result; forwards at most ``rate_hz``
    of them. ``MqttLink.publish`` only queues, so the output thread never waits."""

    def __init__(self, link: MqttLink, model: str, rate_hz: float) -> None:
        self.link = link
        self.topic = link.topics.results(model)
        self.period_s = 1.0 / rate_hz
        self._next = 0.0
        self.published = 0
        self.skipped = 0

    def __call__(self, record: Dict[str, Any]) -> None:
        now = time.monotonic()
        if now < self._next:
            self.skipped += 1
            return
        self._next = now + self.period_s
        self.link.publish(self.topic, record, qos=0)
        self.published += 1
