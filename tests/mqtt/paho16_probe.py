"""Run by Debian's /usr/bin/python3 (paho-mqtt 1.6): connect, publish, receive with MQTT 5 properties."""

from __future__ import annotations

import sys
import time

import paho.mqtt

from edged.config import parse_config
from edged.mqtt import MqttLink
from edged.mqtt.compat import import_paho, new_client, publish_properties

port = int(sys.argv[1])
print("paho", paho.mqtt.__version__)
config = parse_config({"device": {"id": "p16"}, "models": [], "mqtt": {"host": "127.0.0.1", "port": port}}).mqtt
assert config is not None
link = MqttLink(config, "p16")
got = []
link.subscribe("edged/p16/in", got.append)
link.start()
assert link.wait_connected(10)
print("connected")
time.sleep(0.3)
mqtt = import_paho()
sender = new_client(mqtt, "sender", True)
sender.connect("127.0.0.1", port, 30)
sender.loop_start()
sender.publish("edged/p16/in", b"{}", qos=1, properties=publish_properties(mqtt, None, "r/1", b"c")).wait_for_publish()
deadline = time.monotonic() + 10
while not got and time.monotonic() < deadline:
    time.sleep(0.02)
sender.loop_stop()
link.stop()
print("received" if got else "nothing")
print("response-topic-ok" if got and got[0].response_topic == "r/1" and got[0].correlation_data == b"c" else "bad")
