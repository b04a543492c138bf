"""Telemetry consumers at scale share one MQTT 5 subscription (docs/fleet.md): mosquitto
hands each message to one member of ``$share/<group>/<filter>``, so consumers split a
fleet's telemetry between them, and QoS 1 telemetry arrives without gaps."""

from __future__ import annotations

import json
import time
from typing import Dict, List

import pytest

from edged.ctl.session import BrokerOptions, Received, Session
from tests.fleet.conftest import StartDevices
from tests.mqtt.broker import Mosquitto


@pytest.mark.slow
def test_shared_subscription_splits_qos1_telemetry_without_loss_or_duplicates(
    broker: Mosquitto, sim_devices: StartDevices
) -> None:
    received: List[Dict[str, List[int]]] = [{}, {}]
    consumers = []
    for k in range(2):

        def on_message(msg: Received, mine: Dict[str, List[int]] = received[k]) -> None:
            mine.setdefault(msg.topic.split("/")[1], []).append(json.loads(msg.payload)["seq"])

        session = Session(BrokerOptions(host="127.0.0.1", port=broker.port, protocol="5"), f"consumer-{k}", on_message)
        session.connect()
        session.subscribe("$share/dashboards/edged/+/telemetry", qos=1)
        consumers.append(session)
    time.sleep(0.3)
    devices = sim_devices(broker.port, 4, period_s=0.2, qos=1)
    time.sleep(4.0)
    for device in devices:
        device.stop()  # the last telemetry goes out on the way
    time.sleep(1.0)
    for session in consumers:
        session.close()
    assert all(received), "each member of the shared subscription gets a share"
    for device in devices:
        last = device.telemetry.publisher.last
        assert last is not None and last["seq"] >= 10
        seqs = received[0].get(device.id, []) + received[1].get(device.id, [])
        assert sorted(seqs) == list(range(1, last["seq"] + 1)), device.id  # each once, none lost
