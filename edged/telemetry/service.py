"""The daemon's MQTT presence: the link with birth/LWT status, answers to fleet presence
queries, and periodic telemetry."""

from __future__ import annotations

import logging
import platform
from typing import Any, Callable, Dict, Mapping, Optional

from edged import __version__
from edged.config.model import Config
from edged.model_state import ModelState, RunningState
from edged.mqtt.link import MqttLink
from edged.telemetry.ha_discovery import HomeAssistantDiscovery
from edged.telemetry.presence import PresenceResponder
from edged.telemetry.publisher import TelemetryPublisher
from edged.telemetry.readers import open_readers
from edged.telemetry.snapshot import Snapshotter

__all__ = ["TelemetryService"]

log = logging.getLogger(__name__)


class TelemetryService:
    """``snapshot`` returns the running state each period (edged/model_state.py)."""

    def __init__(self, config: Config, snapshot: Callable[[], RunningState]) -> None:
        assert config.mqtt is not None
        self._snapshot = snapshot
        root = config.telemetry.root
        self.power, self.health = open_readers(root)
        power_spec = self.power.spec
        if not power_spec.rails:
            log.info("power telemetry unavailable: %s", power_spec.reason)
        birth: Dict[str, Any] = {
            "version": __version__,
            "platform": {"machine": platform.machine(), "system": f"{platform.system()} {platform.release()}"},
            "backends": sorted({m.backend for m in config.models}),
            "power": power_spec.source or f"unavailable: {power_spec.reason}",
            "groups": list(config.device.groups),
        }
        self.link = MqttLink(config.mqtt, config.device.id, birth=birth)
        snapshotter = Snapshotter(config.device.id, self.power, self.health, config.telemetry.window_s)
        self.publisher = TelemetryPublisher(
            self.link,
            snapshotter,
            self.models,
            config.telemetry.period_s,
            config.telemetry.expiry_s,
            self._extra,
            config.telemetry.qos,
        )
        self._last: Optional[RunningState] = None
        self.discovery: Optional[HomeAssistantDiscovery] = None
        if config.home_assistant.discovery:
            zones = [zone.name for zone in self.health.spec.zones]
            models = [m.name for m in config.models]
            self.discovery = HomeAssistantDiscovery(
                self.link,
                config.home_assistant.prefix,
                birth,
                self.publisher.expiry_s,
                zones,
                bool(power_spec.rails),
                models,
            )

        self.presence = PresenceResponder(self.link, snapshot, self._telemetry_at, __version__)
        self.presence.attach()

    def _telemetry_at(self) -> Optional[float]:
        return self.publisher.last_published_at

    def configure(self, config: Config) -> None:
        """Take an applied config's telemetry period, expiry and QoS (the rest of the section
        is read at start; edged/config/effect.py), and its models for Home Assistant."""
        self.publisher.configure(config.telemetry.period_s, config.telemetry.expiry_s, config.telemetry.qos)
        if self.discovery is not None:
            self.discovery.update([m.name for m in config.models], self.publisher.expiry_s)

    def models(self) -> Mapping[str, ModelState]:
        self._last = self._snapshot()
        return self._last.models

    def _extra(self) -> Dict[str, Any]:
        """Called after ``models`` for the same document: what the snapshot says beyond models."""
        extra: Dict[str, Any] = {}
        if self._last is None:
            return extra
        if self._last.plan_cache_problem:
            extra["plans"] = {"cache_problem": self._last.plan_cache_problem}
        if self._last.downloads:
            extra["downloads"] = [progress.as_dict() for progress in self._last.downloads]
        return extra

    def start(self) -> None:
        self.link.start()
        self.publisher.start()

    def stop(self) -> None:
        self.publisher.stop()
        if self.link.connected.is_set():
            self.publisher.publish_once()  # the final counters, after the drain
        self.link.stop()

    @staticmethod
    def maybe(config: Config, snapshot: Callable[[], RunningState]) -> Optional["TelemetryService"]:
        return TelemetryService(config, snapshot) if config.mqtt is not None else None
