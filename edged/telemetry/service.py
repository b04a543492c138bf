"""Wires the MQTT link and telemetry publishing to a running daemon."""

from __future__ import annotations

import logging
import platform
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

from edged import __version__
from edged.mqtt.link import MqttLink
from edged.telemetry.health import HealthReader, discover_health
from edged.telemetry.power import PowerReader, discover_power
from edged.telemetry.publisher import TelemetryPublisher
from edged.telemetry.snapshot import ModelView, Snapshotter

if TYPE_CHECKING:
    from edged.daemon import Daemon

__all__ = ["TelemetryService", "model_views"]

log = logging.getLogger(__name__)


def model_views(daemon: "Daemon") -> Dict[str, ModelView]:
    """What telemetry reports of each configured model, read from the daemon's slots."""
    from edged.daemon import resolve_device

    out = {}
    for name, slot in list(daemon.slots.items()):
        stats = slot.pipeline.stats if slot.pipeline else None
        status = getattr(slot.pipeline.source, "status", None) if slot.pipeline else None
        source = status() if callable(status) else None
        device = resolve_device(slot.config)
        out[name] = ModelView(name, device, slot.config.batch, slot.state, stats, slot.error, source)
    return out


class TelemetryService:
    """The daemon's MQTT presence: birth/LWT status and periodic telemetry."""

    def __init__(self, daemon: "Daemon") -> None:
        config = daemon.config
        assert config.mqtt is not None
        self.daemon = daemon
        root = config.telemetry.root
        power_spec = discover_power(root)
        if not power_spec.rails:
            log.info("power telemetry unavailable: %s", power_spec.reason)
        self.power = PowerReader(power_spec)
        self.health = HealthReader(discover_health(root))
        birth: Dict[str, Any] = {
            "version": __version__,
            "platform": {"machine": platform.machine(), "system": f"{platform.system()} {platform.release()}"},
            "backends": sorted({m.backend for m in config.models}),
            "power": power_spec.source or f"unavailable: {power_spec.reason}",
        }
        self.link = MqttLink(config.mqtt, config.device.id, birth=birth)
        snapshotter = Snapshotter(config.device.id, self.power, self.health, config.telemetry.window_s)
        self.publisher = TelemetryPublisher(
            self.link, snapshotter, self.views, config.telemetry.period_s, config.telemetry.expiry_s
        )

    def views(self) -> Mapping[str, ModelView]:
        return model_views(self.daemon)

    def start(self) -> None:
        self.link.start()
        self.publisher.start()

    def stop(self) -> None:
        self.publisher.stop()
        if self.link.connected.is_set():
            self.publisher.publish_once()  # the final counters, after the drain
        self.link.stop()

    @staticmethod
    def maybe(daemon: "Daemon") -> Optional["TelemetryService"]:
        return TelemetryService(daemon) if daemon.config.mqtt is not None else None
