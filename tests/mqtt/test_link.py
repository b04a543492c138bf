from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from edged.config import parse_config
from edged.config.model import MqttConfig
from edged.errors import ConfigError
from edged.mqtt import Message, MqttLink
from edged.mqtt.security import read_password
from tests.mqtt.broker import Mosquitto, make_ca
from tests.mqtt.observer import Observer

REPO = Path(__file__).resolve().parents[2]


def mqtt_config(port: int, **extra: Any) -> MqttConfig:
    doc: Dict[str, Any] = {"device": {"id": "dev1"}, "models": [], "mqtt": {"host": "127.0.0.1", "port": port, **extra}}
    config = parse_config(doc).mqtt
    assert config is not None
    return config


def test_birth_is_retained_and_buffered_messages_arrive_after_connecting(broker: Mosquitto) -> None:
    link = MqttLink(mqtt_config(broker.port, backoff_max_s=0.5), "dev1", birth={"version": "x"})
    link.publish("edged/dev1/early", {"n": 1})  # queued before any connection exists
    link.start()
    try:
        assert link.wait_connected(10)
        observer = Observer(broker.port, "edged/#")
        status = observer.wait_for(lambda t, d: t == "edged/dev1/status")
        assert status is not None and status[1]["state"] == "online" and status[1]["version"] == "x"
        assert observer.messages[0][2] is True  # the status arrived as a retained message
        link.publish("edged/dev1/telemetry", {"n": 2}, expiry_s=10)
        assert observer.wait_for(lambda t, d: t == "edged/dev1/telemetry" and d == {"n": 2})
        observer.close()
    finally:
        link.stop()
    assert link.counters.published >= 2 and link.counters.protocol == "5"


def test_handlers_get_mqtt5_response_topic_and_correlation_data(broker: Mosquitto) -> None:
    link = MqttLink(mqtt_config(broker.port), "dev1")
    got: List[Message] = []
    link.subscribe("edged/dev1/config/set", got.append)
    link.start()
    try:
        assert link.wait_connected(10)
        time.sleep(0.3)  # the subscription is sent right after CONNACK
        sender = Observer(broker.port, "none/none")
        from edged.mqtt.compat import import_paho, publish_properties

        props = publish_properties(import_paho(), None, "replies/1", b"corr-7")
        sender.client.publish("edged/dev1/config/set", b'{"version": 3}', qos=1, properties=props)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        sender.close()
    finally:
        link.stop()
    assert got and got[0].json() == {"version": 3}
    assert got[0].response_topic == "replies/1" and got[0].correlation_data == b"corr-7"


def test_kill_9_leaves_the_last_will_offline(broker: Mosquitto) -> None:
    observer = Observer(broker.port, "edged/+/status")
    script = (
        "import sys, time\n"
        "from edged.config import parse_config\n"
        "from edged.mqtt import MqttLink\n"
        f"mqtt = {{'host': '127.0.0.1', 'port': {broker.port}}}\n"
        "c = parse_config({'device': {'id': 'victim'}, 'models': [], 'mqtt': mqtt})\n"
        "link = MqttLink(c.mqtt, 'victim'); link.start(); link.wait_connected(10)\n"
        "print('up', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=str(REPO))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        assert observer.wait_for(lambda t, d: t == "edged/victim/status" and d["state"] == "online")
        proc.kill()
        offline = observer.wait_for(lambda t, d: t == "edged/victim/status" and d["state"] == "offline")
        assert offline is not None and offline[1]["reason"] == "connection lost"
    finally:
        proc.kill()
        proc.wait()
        observer.close()


def test_outage_is_buffered_bounded_and_recovered(tmp_path: Path) -> None:
    server = Mosquitto(tmp_path / "b").start()
    link = MqttLink(mqtt_config(server.port, buffer_messages=5, backoff_max_s=0.5), "dev1")
    link.start()
    try:
        assert link.wait_connected(10)
        server.stop()
        deadline = time.monotonic() + 10
        while link.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not link.connected.is_set()
        for i in range(12):
            link.publish("edged/dev1/telemetry", {"i": i})  # returns at once while offline
        assert link.counters.dropped_offline == 7 and link.pending() == 5
        server.start()
        observer = Observer(server.port, "edged/dev1/telemetry")
        assert link.wait_connected(15)
        assert observer.wait_for(lambda t, d: d == {"i": 11}, timeout=10)
        assert [p["i"] for p in observer.payloads("edged/dev1/telemetry")] == [7, 8, 9, 10, 11]
        observer.close()
    finally:
        link.stop()
        server.stop()
    assert link.counters.connects == 2


def test_tls_with_the_right_ca_connects_and_a_wrong_ca_is_named(tmp_path: Path) -> None:
    pki = make_ca(tmp_path / "pki")
    other = make_ca(tmp_path / "other", name="other")
    server = Mosquitto(tmp_path / "b", tls=pki).start()
    try:
        good = MqttLink(mqtt_config(server.port, tls={"ca_file": str(pki["ca"])}), "dev1")
        good.start()
        assert good.wait_connected(10)
        good.stop()
        bad = MqttLink(mqtt_config(server.port, tls={"ca_file": str(other["ca"])}, backoff_max_s=0.2), "dev1")
        bad.start()
        time.sleep(1.5)
        bad.stop()
        assert not bad.connected.is_set()
        assert bad.counters.connection_failures >= 2
        assert "TLS handshake failed" in (bad.counters.last_error or "")
        assert "certificate verify failed" in (bad.counters.last_error or "")
    finally:
        server.stop()


def test_wrong_credentials_are_named_and_retried_and_acl_applies(tmp_path: Path) -> None:
    acl = ["user edge", "topic readwrite edged/dev1/#"]
    server = Mosquitto(tmp_path / "b", users={"edge": "s3cret"}, acl=acl).start()
    good_pw, bad_pw = tmp_path / "good", tmp_path / "bad"
    good_pw.write_text("s3cret\n")
    bad_pw.write_text("nope\n")
    for path in (good_pw, bad_pw):
        path.chmod(0o600)
    try:
        bad = MqttLink(mqtt_config(server.port, username="edge", password_file=str(bad_pw), backoff_max_s=0.2), "dev1")
        bad.start()
        time.sleep(1.5)
        bad.stop()
        assert not bad.connected.is_set() and bad.counters.connection_failures >= 2
        assert "refused the credentials" in (bad.counters.last_error or "")
        good = MqttLink(mqtt_config(server.port, username="edge", password_file=str(good_pw)), "dev1")
        good.start()
        assert good.wait_connected(10)
        good.stop()
    finally:
        server.stop()


def test_password_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("secret\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"mqtt.password_file: .*\(mode 0644\)"):
        read_password(str(path))
    path.chmod(0o600)
    assert read_password(str(path)) == "secret"
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: cannot read"):
        read_password(str(tmp_path / "absent"))


DEBIAN_PYTHON = "/usr/bin/python3"


def test_the_link_works_with_debians_paho_1_6(broker: Mosquitto) -> None:
    """The venv tests run on PyPI's paho 2.x; Debian's interpreter sees python3-paho-mqtt 1.6."""
    probe = subprocess.run(
        [
            DEBIAN_PYTHON,
            "-S",
            "-c",
            "import sys; sys.path.append('/usr/lib/python3/dist-packages'); "
            "import paho.mqtt; print(paho.mqtt.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"Debian's python3-paho-mqtt is not installed: {probe.stderr.strip()}")
    assert probe.stdout.startswith("1.")
    script = REPO / "tests" / "mqtt" / "paho16_probe.py"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [DEBIAN_PYTHON, str(script), str(broker.port)], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["paho", probe.stdout.strip(), "connected", "received", "response-topic-ok"]
