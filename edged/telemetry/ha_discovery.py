"""Home Assistant MQTT discovery: edged as a device with sensors, from the telemetry it already
publishes.

Each sensor's config is published retained to ``<prefix>/sensor/<node>/<object>/config``
(Home Assistant's discovery topic layout, https://www.home-assistant.io/integrations/mqtt/);
its state comes from the telemetry topic through a ``value_template``, and its availability
from edged's retained birth/last-will status topic. Per model: state, fps, end-to-end latency
p50 and p99, and the energy per inference of the model's device; per device: board power and
each temperature. A model removed from the config has its configs cleared (an empty retained
payload deletes a discovered entity), also across restarts: the retained configs under this
device's node are read back on every connection and those of unknown models are cleared.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from edged import __version__
from edged.mqtt.link import Message, MqttLink

__all__ = ["HomeAssistantDiscovery", "value_template"]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _object_id(text: str) -> str:
    """Discovery topic levels take letters, digits, _ and - only; model names may hold '.'."""
    return _UNSAFE.sub("_", text)


# A key of a template path: a literal, or (a tuple) the value found at another path.
Key = Union[str, Tuple[Any, ...]]


def _lookup(path: Sequence[Key]) -> Tuple[str, List[str]]:
    """The Jinja expression of ``value_json[path...]`` and the guards that it is defined."""
    expression, guards = "value_json", []
    for key in path:
        if isinstance(key, tuple):
            inner, inner_guards = _lookup(key)
            guards += [g for g in inner_guards if g not in guards]
            expression = f"{expression}[{inner}]"
        else:
            expression = f"{expression}[{json.dumps(key)}]"
        guards.append(f"{expression} is defined")
    return expression, guards


def value_template(path: Sequence[Key], scale: Optional[float] = None) -> str:
    """A template reading ``value_json[path[0]][path[1]]...``, or ``null`` (unknown, per the
    sensor's documentation) where any step is missing: fps is absent from the first telemetry
    message, energy where power is unreadable. Subscripts, not dots: names may hold '.' or '-'."""
    expression, guards = _lookup(path)
    value = expression if scale is None else f"({expression} * {scale!r})"
    return f"{{% if {' and '.join(guards)} %}}{{{{ {value} }}}}{{% else %}}null{{% endif %}}"


class HomeAssistantDiscovery:
    """Publishes (and clears) the discovery configs of the models in force."""

    def __init__(
        self,
        link: MqttLink,
        prefix: str,
        birth: Mapping[str, Any],
        expire_after_s: int,
        temperature_zones: Sequence[str],
        power: bool,
        models: Sequence[str],
    ) -> None:
        """Nothing is published before the link connects: every connection publishes all."""
        self.link = link
        self.prefix = prefix
        self.node = f"edged_{_object_id(link.topics.device_id)}"
        self.expire_after_s = expire_after_s
        self._zones = tuple(temperature_zones)
        self._power = power
        platform = birth.get("platform") or {}
        self.device = {
            "identifiers": [self.node],
            "name": f"edged {link.topics.device_id}",
            "manufacturer": "edged",
            "model": str(platform.get("machine") or "edged node"),
            "sw_version": __version__,
        }
        self._models: List[str] = list(models)
        self._published: Dict[str, str] = {}  # topic -> payload published (retained)
        # Retained configs under this node, read back on each connection to clear the stale.
        link.subscribe(f"{prefix}/sensor/{self.node}/+/config", self._on_retained)
        link.on_connect(self._on_connect)

    # -- the configs ---------------------------------------------------------------------

    def topic(self, object_id: str) -> str:
        return f"{self.prefix}/sensor/{self.node}/{object_id}/config"

    def _sensor(self, object_id: str, name: str, path: Sequence[Key], **extra: Any) -> Dict[str, Any]:
        config: Dict[str, Any] = {
            "name": name,
            "unique_id": f"{self.node}_{object_id}",
            "object_id": f"{self.node}_{object_id}",
            "state_topic": self.link.topics.telemetry,
            "value_template": value_template(path, extra.pop("scale", None)),
            "availability": [{"topic": self.link.topics.status, "value_template": "{{ value_json.state }}"}],
            "expire_after": self.expire_after_s,
            "device": self.device,
        }
        config.update(extra)
        return config

    def model_configs(self, model: str) -> Dict[str, Dict[str, Any]]:
        """Topic -> config of one model's sensors."""
        oid = _object_id(model)
        measured = {"state_class": "measurement", "suggested_display_precision": 1}
        latency = {"device_class": "duration", "unit_of_measurement": "ms", **measured}
        sensors = {
            f"{oid}_state": self._sensor(f"{oid}_state", f"{model} state", ("models", model, "state")),
            f"{oid}_fps": self._sensor(
                f"{oid}_fps", f"{model} fps", ("models", model, "fps"), unit_of_measurement="fps", **measured
            ),
            f"{oid}_latency_p50": self._sensor(
                f"{oid}_latency_p50", f"{model} latency p50", ("models", model, "latency_ms", "e2e", "p50"), **latency
            ),
            f"{oid}_latency_p99": self._sensor(
                f"{oid}_latency_p99", f"{model} latency p99", ("models", model, "latency_ms", "e2e", "p99"), **latency
            ),
        }
        # The model's device is in the same message: the template looks it up there.
        sensors[f"{oid}_energy_per_inference"] = self._sensor(
            f"{oid}_energy_per_inference",
            f"{model} energy per inference",
            ("devices", ("models", model, "device"), "energy_per_inference_mj"),
            unit_of_measurement="mJ",
            **measured,
        )
        return {self.topic(object_id): config for object_id, config in sensors.items()}

    def device_configs(self) -> Dict[str, Dict[str, Any]]:
        sensors: Dict[str, Dict[str, Any]] = {}
        if self._power:
            sensors["board_power"] = self._sensor(
                "board_power",
                "board power",
                ("power", "total_mw"),
                scale=0.001,
                device_class="power",
                unit_of_measurement="W",
                state_class="measurement",
                suggested_display_precision=2,
            )
        for zone in self._zones:
            oid = f"temperature_{_object_id(zone)}"
            sensors[oid] = self._sensor(
                oid,
                f"{zone} temperature",
                ("temps_c", zone),
                device_class="temperature",
                unit_of_measurement="°C",
                state_class="measurement",
                suggested_display_precision=1,
            )
        return {self.topic(object_id): config for object_id, config in sensors.items()}

    def configs(self) -> Dict[str, Dict[str, Any]]:
        """Every config for the models in force, by discovery topic."""
        out = self.device_configs()
        for model in self._models:
            out.update(self.model_configs(model))
        return out

    # -- publishing ----------------------------------------------------------------------

    def update(self, models: Sequence[str], expire_after_s: Optional[int] = None) -> None:
        """Take the models in force: publish new or changed configs, clear removed ones."""
        self._models = list(models)
        if expire_after_s is not None:
            self.expire_after_s = expire_after_s
        self._sync(force=False)

    def _sync(self, force: bool) -> None:
        wanted = {topic: json.dumps(config, sort_keys=True) for topic, config in self.configs().items()}
        for topic in sorted(set(self._published) - set(wanted)):
            self.link.publish(topic, b"", qos=1, retain=True)
            log.info("home assistant: removed %s", topic)
        for topic, payload in wanted.items():
            if force or self._published.get(topic) != payload:
                self.link.publish(topic, payload.encode(), qos=1, retain=True)
        self._published = wanted

    def _on_connect(self) -> None:
        # A broker without persistence forgets retained configs when it restarts.
        self._sync(force=True)

    def _on_retained(self, message: Message) -> None:
        if message.payload and message.topic not in self._published:
            log.info("home assistant: clearing %s, left from a model no longer configured", message.topic)
            self.link.publish(message.topic, b"", qos=1, retain=True)
