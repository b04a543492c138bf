"""Two links with one client id: the second connection is detected and yields instead of
the two knocking each other off every second (edged/mqtt/takeover.py)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from edged.mqtt import MqttLink
from tests.mqtt.broker import Mosquitto
from tests.mqtt.test_link import mqtt_config


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_second_device_with_the_same_id_yields_and_reports(
    broker: Mosquitto, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = mqtt_config(broker.port, protocol=protocol, backoff_max_s=6)
    first = MqttLink(config, "dev1", birth={"who": "first"})
    first.subscribe("edged/dev1/config/set", lambda m: None)  # a persistent session, as edged's
    first.start()
    assert first.wait_connected(10)
    time.sleep(0.5)
    second = MqttLink(config, "dev1", birth={"who": "second"})
    second.subscribe("edged/dev1/config/set", lambda m: None)
    with caplog.at_level(logging.WARNING, logger="edged.mqtt.link"):
        second.start()
        time.sleep(8.0)
        connects = first.counters.connects + second.counters.connects
        from tests.mqtt.observer import Observer

        observer = Observer(broker.port, "edged/dev1/status")
        status = observer.wait_for(lambda t, d: isinstance(d, dict), timeout=5)
        observer.close()
    second.stop()
    first.stop()
    # Without the check, each link reconnects within about a second of being knocked off:
    # more than a dozen connections in 8 s. With it, the one that lost yields.
    assert connects <= 5, (first.counters, second.counters)
    assert first.counters.client_id_conflicts + second.counters.client_id_conflicts >= 1
    reported = [
        r.getMessage() for r in caplog.records if "another connection uses client id 'edged-dev1'" in r.getMessage()
    ]
    assert reported and "device ids must be unique" in reported[0]
    assert [r.levelno for r in caplog.records if r.getMessage() in reported][:1] == [logging.ERROR]
    assert status is not None and status[1]["state"] == "online"  # the survivor's birth stands
    assert json.dumps(status[1]).count("instance") == 1
