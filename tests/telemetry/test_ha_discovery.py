"""Home Assistant MQTT discovery against a real mosquitto: the configs, checked against Home
Assistant's documented schema for the sensor entity, their templates rendered with Jinja on
the telemetry edged publishes, and removal of a model's sensors (on reload and across a
restart)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Dict, List, Set

import jinja2
import pytest

from tests.metrics.daemon import models, start, write_config
from tests.mqtt.broker import Mosquitto
from tests.mqtt.observer import Observer

# Home Assistant's documented configuration of an MQTT sensor, keys and types as the page
# states them: home-assistant/home-assistant.io, source/_integrations/sensor.mqtt.markdown
# (commit 9e4a69ab998700a518e366a7f54551a150fccf94), "{% configuration %}", for example:
#   state_topic: "The MQTT topic subscribed to receive sensor values." required: true, type: string
#   availability: "A list of MQTT topics subscribed to receive availability (online/offline)
#     updates." type: list, keys: topic (required, string), payload_available (string),
#     payload_not_available (string), value_template (template)
#   expire_after: "If set, it defines the number of seconds after the sensor's state expires,
#     if it's not updated." type: integer
#   device: "Information about the device this sensor is a part of ... Only works when
#     unique_id is set. At least one of identifiers or connections must be present to
#     identify the device." type: map; identifiers: [string, list]
# (only the keys edged uses, and the ones they sit beside, are listed here).
SENSOR_KEYS: Dict[str, Any] = {
    "availability": list,
    "availability_mode": str,
    "device": dict,
    "device_class": str,
    "enabled_by_default": bool,
    "entity_category": str,
    "expire_after": int,
    "force_update": bool,
    "icon": str,
    "name": str,
    "object_id": str,
    "qos": int,
    "state_class": str,
    "state_topic": str,
    "suggested_display_precision": int,
    "unique_id": str,
    "unit_of_measurement": str,
    "value_template": str,
}
AVAILABILITY_KEYS = {"topic": str, "payload_available": str, "payload_not_available": str, "value_template": str}
DEVICE_KEYS = {
    "configuration_url": str,
    "connections": list,
    "hw_version": str,
    "identifiers": (str, list),
    "manufacturer": str,
    "model": str,
    "model_id": str,
    "name": str,
    "serial_number": str,
    "suggested_area": str,
    "sw_version": str,
    "via_device": str,
}
# The sensor page links its device classes and state classes to the entity documentation
# (developers.home-assistant.io, "core/entity/sensor"); those used here are among them.
DEVICE_CLASSES = {"duration", "power", "temperature"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}


def _check_sensor(config: Dict[str, Any]) -> None:
    assert "state_topic" in config and "unique_id" in config  # required; unique_id for the device registry
    for key, value in config.items():
        assert key in SENSOR_KEYS, f"{key} is not a documented sensor key"
        assert isinstance(value, SENSOR_KEYS[key]), f"{key}: {value!r}"
    for entry in config["availability"]:
        assert "topic" in entry
        assert all(isinstance(entry[k], AVAILABILITY_KEYS[k]) for k in entry)
    device = config["device"]
    assert device.get("identifiers") or device.get("connections")
    assert all(isinstance(device[k], DEVICE_KEYS[k]) for k in device)  # type: ignore[arg-type]
    assert config.get("device_class", "duration") in DEVICE_CLASSES
    assert config.get("state_class", "measurement") in STATE_CLASSES


def _configs(observer: Observer, prefix: str = "homeassistant/") -> Dict[str, Any]:
    """The last payload of every discovery topic seen (b"" for a cleared one)."""
    out: Dict[str, Any] = {}
    for topic, payload, _, _ in list(observer.messages):
        if topic.startswith(prefix):
            out[topic] = json.loads(payload) if payload else b""
    return out


def _wait(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _render(template: str, doc: Dict[str, Any]) -> str:
    return jinja2.Environment(autoescape=False).from_string(template).render(value_json=doc)


@pytest.mark.slow
def test_discovery_configs_follow_the_documented_schema_and_their_templates_read_telemetry(
    broker: Mosquitto, tmp_path: Path, demo_assets: Path
) -> None:
    mqtt = {"host": "127.0.0.1", "port": broker.port, "backoff_max_s": 0.5}
    doc = {
        "mqtt": mqtt,
        "home_assistant": {"discovery": True},
        "models": models(demo_assets, tmp_path, ["cam", "door.2"]),
    }
    config = write_config(tmp_path, doc)
    observer = Observer(broker.port, "#")
    edged = start(config)
    node = "homeassistant/sensor/edged_metrics-1"
    try:
        per_model = ["state", "fps", "latency_p50", "latency_p99", "energy_per_inference"]
        wanted: Set[str] = {f"{node}/{m}_{s}/config" for m in ("cam", "door_2") for s in per_model}
        wanted |= {f"{node}/board_power/config", f"{node}/temperature_tj/config"}
        assert _wait(lambda: wanted <= set(_configs(observer))), sorted(_configs(observer))
        telemetry = observer.wait_for(
            lambda t, d: t.endswith("/telemetry") and d["seq"] >= 4 and "fps" in d["models"]["cam"]
        )
        assert telemetry is not None
        configs = _configs(observer)
        for topic in wanted:
            _check_sensor(configs[topic])
            assert configs[topic]["availability"][0]["topic"] == "edged/metrics-1/status"
            assert configs[topic]["state_topic"] == "edged/metrics-1/telemetry"
        unique = [c["unique_id"] for c in configs.values()]
        assert len(unique) == len(set(unique))
        tele = telemetry[1]
        fps = float(_render(configs[f"{node}/cam_fps/config"]["value_template"], tele))
        assert fps == pytest.approx(tele["models"]["cam"]["fps"])
        p99 = float(_render(configs[f"{node}/door_2_latency_p99/config"]["value_template"], tele))
        assert p99 == pytest.approx(tele["models"]["door.2"]["latency_ms"]["e2e"]["p99"])
        watts = float(_render(configs[f"{node}/board_power/config"]["value_template"], tele))
        assert watts == pytest.approx(tele["power"]["total_mw"] / 1000.0)
        energy = _render(configs[f"{node}/cam_energy_per_inference/config"]["value_template"], tele)
        assert float(energy) == pytest.approx(tele["devices"]["cpu"]["energy_per_inference_mj"])
        assert _render(configs[f"{node}/cam_state/config"]["value_template"], tele) == "running"
        # A message without the value (the first one has no fps): unknown, per the docs' 'null'.
        assert _render(configs[f"{node}/cam_fps/config"]["value_template"], {"models": {"cam": {}}}) == "null"
        avail = configs[f"{node}/cam_fps/config"]["availability"][0]["value_template"]
        status = observer.wait_for(lambda t, d: t == "edged/metrics-1/status")
        assert status is not None and _render(avail, status[1]) == "online"
        assert _render(avail, {"state": "offline", "reason": "connection lost"}) == "offline"  # the last will

        # Reload without door.2: its sensors are cleared (empty retained payloads), cam's stay.
        write_config(tmp_path, {**doc, "models": models(demo_assets, tmp_path, ["cam"])})
        edged.send_signal(signal.SIGHUP)
        door = {t for t in wanted if "/door_2_" in t}
        assert _wait(lambda: all(_configs(observer).get(t) == b"" for t in door))
        assert all(_configs(observer)[t] != b"" for t in wanted - door)
    finally:
        edged.send_signal(signal.SIGTERM)
        _, err = edged.communicate(timeout=20)
        observer.close()
    assert edged.returncode == 0, err[-2000:]


@pytest.mark.slow
def test_sensors_of_a_model_removed_while_edged_was_down_are_cleared_at_the_next_start(
    broker: Mosquitto, tmp_path: Path, demo_assets: Path
) -> None:
    mqtt = {"host": "127.0.0.1", "port": broker.port, "backoff_max_s": 0.5}
    node = "homeassistant/sensor/edged_metrics-1"
    runs: List[List[str]] = [["cam", "gate"], ["cam"]]
    for names in runs:
        doc = {"mqtt": mqtt, "home_assistant": {"discovery": True}, "models": models(demo_assets, tmp_path, names)}
        edged = start(write_config(tmp_path, doc))
        observer = Observer(broker.port, "homeassistant/#")  # retained configs arrive at once
        try:
            if names == ["cam", "gate"]:
                assert _wait(lambda seen=observer: f"{node}/gate_fps/config" in _configs(seen))
            else:
                assert _wait(lambda seen=observer: _configs(seen).get(f"{node}/gate_fps/config") == b"")
                assert _configs(observer)[f"{node}/cam_fps/config"] != b""
        finally:
            edged.send_signal(signal.SIGTERM)
            edged.communicate(timeout=20)
            observer.close()
    late = Observer(broker.port, "homeassistant/#")
    time.sleep(0.5)
    retained = _configs(late)
    late.close()
    assert f"{node}/cam_fps/config" in retained and not any("/gate_" in t for t in retained)
