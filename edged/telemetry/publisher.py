"""Publishes a telemetry document every period on its own thread."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, Mapping, Optional

from edged.model_state import ModelState
from edged.mqtt.link import MqttLink
from edged.telemetry.snapshot import Snapshotter

__all__ = ["TelemetryPublisher"]

log = logging.getLogger(__name__)


class TelemetryPublisher:
    """Every ``period_s``: snapshot, then a QoS 0 publish with message expiry. Publishing
    only queues (MqttLink never blocks), so a dead broker costs the pipelines nothing."""

    def __init__(
        self,
        link: MqttLink,
        snapshotter: Snapshotter,
        models: Callable[[], Mapping[str, ModelState]],
        period_s: float,
        expiry_s: Optional[int] = None,
        extra: Optional[Callable[[], Dict[str, Any]]] = None,
    ) -> None:
        self.link = link
        self.snapshotter = snapshotter
        self._models = models
        self.period_s = period_s
        self.expiry_s = expiry_s if expiry_s is not None else max(1, int(3 * period_s))
        self._extra = extra
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.last: Optional[Dict[str, Any]] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="edged-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def publish_once(self) -> Dict[str, Any]:
        extra = self._extra() if self._extra else {}
        extra["mqtt"] = {"dropped_offline": self.link.counters.dropped_offline, "connects": self.link.counters.connects}
        doc = self.snapshotter.snapshot(self._models(), extra)
        self.link.publish(self.link.topics.telemetry, doc, qos=0, expiry_s=self.expiry_s)
        self.last = doc
        return doc

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.publish_once()
            except Exception:  # telemetry must never take the daemon down
                log.exception("telemetry snapshot failed")
