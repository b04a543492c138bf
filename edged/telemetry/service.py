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

__all__ = ["TelemetryService", "model_views", "placement_view"]

log = logging.getLogger(__name__)


# differs_from_prediction is per layer, too long to repeat every period; the plan's manifest
# keeps the layer placement it came from.
PLACEMENT_KEYS = ("reason", "note", "not_on", "fell_back_from", "error", "accuracy")


def placement_view(status: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The non-empty placement fields of ``Placer.status()``; None when there are none."""
    view = {key: status[key] for key in PLACEMENT_KEYS if status.get(key)}
    return view or None


def model_views(daemon: "Daemon") -> Dict[str, ModelView]:
    """What telemetry reports of each configured model, read from the daemon's slots."""
    out = {}
    for name, slot in list(daemon.slots.items()):
        stats = slot.pipeline.stats if slot.pipeline else None
        status = getattr(slot.pipeline.source, "status", None) if slot.pipeline else None
        source = status() if callable(status) else None
        placement = placement_view(daemon.placer.status(name))
        engines = tuple(slot.pipeline.devices) if slot.pipeline else ()
        out[name] = ModelView(
            name, daemon.device_of(name), slot.config.batch, slot.state, stats, slot.error, source, placement, engines
        )
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
