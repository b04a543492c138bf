"""Publishes a telemetry document every period on its own thread."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional

from edged.model_state import ModelState
from edged.mqtt.link import MqttLink
from edged.telemetry.snapshot import Snapshotter

__all__ = ["TelemetryPublisher"]

log = logging.getLogger(__name__)

_WAKE_S = 1.0


class TelemetryPublisher:
    """Every ``period_s``: snapshot, then a publish (QoS 0 unless configured) with message expiry. Publishing
    only queues (MqttLink never blocks), so a dead broker costs the pipelines nothing."""

    def __init__(
        self,
        link: MqttLink,
        snapshotter: Snapshotter,
        models: Callable[[], Mapping[str, ModelState]],
        period_s: float,
        expiry_s: Optional[int] = None,
        extra: Optional[Callable[[], Dict[str, Any]]] = None,
        qos: int = 0,
    ) -> None:
        self.link = link
        self.snapshotter = snapshotter
        self._models = models
        self.period_s = period_s
        self.expiry_s = expiry_s if expiry_s is not None else max(1, int(3 * period_s))
        self._extra = extra
        self.qos = qos
        self.last_published_at: Optional[float] = None  # time.time() of the latest document
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
        models = self._models()
        extra = self._extra() if self._extra else {}
        extra["mqtt"] = {"dropped_offline": self.link.counters.dropped_offline, "connects": self.link.counters.connects}
        doc = self.snapshotter.snapshot(models, extra)
        self.link.publish(self.link.topics.telemetry, doc, qos=self.qos, expiry_s=self.expiry_s)
        self.last = doc
        self.last_published_at = time.time()
        return doc

    def configure(self, period_s: float, expiry_s: Optional[int] = None, qos: int = 0) -> None:
        """A new period, message expiry and QoS, in effect from the next wait on."""
        self.period_s = period_s
        self.qos = qos
        self.expiry_s = expiry_s if expiry_s is not None else max(1, int(3 * period_s))

    def _loop(self) -> None:
        last = time.monotonic()
        # Short waits, so a new (shorter) period applies without waiting out the old one.
        while not self._stop.wait(min(_WAKE_S, max(0.0, last + self.period_s - time.monotonic()))):
            now = time.monotonic()
            if now < last + self.period_s:
                continue
            last = now
            try:
                self.publish_once()
            except Exception:  # telemetry must never take the daemon down
                log.exception("telemetry snapshot failed")
