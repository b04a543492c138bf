"""The same edged and edgectl behaviour on every broker of conftest.py: devices connect
with protocol ``auto``, edgectl lists them and pushes to their group, a killed device's
Last Will reaches the operator, a push sent while a device is away is applied when it
returns, and (bridge) results and status cross a 60 s uplink cut once it heals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import pytest
from fleet_sim.device import SimDevice

from edged.ctl.session import BrokerOptions, Received, Session
from tests.brokers.conftest import BrokerUnderTest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def edgectl(broker: BrokerUnderTest, *args: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    command = [sys.executable, "-m", "edged.ctl", *broker.edgectl_args(), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def operator_session(broker: BrokerUnderTest, *topics: str) -> Session:
    options = BrokerOptions(
        host="127.0.0.1", port=broker.operator_port, username=broker.username, password=broker.password
    )
    session = Session(options, f"observer-{time.monotonic_ns()}")
    session.connect()
    for topic in topics:
        session.subscribe(topic)
    time.sleep(0.5)
    return session


def wait_for(session: Session, topic: str, predicate, timeout_s: float = 20) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            msg: Received = session.messages.get(timeout=0.2)
        except Exception:
            continue
        if msg.topic == topic:
            try:
                doc = json.loads(msg.payload)
            except ValueError:
                doc = msg.payload.decode()
            if predicate(doc):
                return doc  # type: ignore[no-any-return]
    raise AssertionError(f"nothing matching on {topic} within {timeout_s:g}s")


@pytest.fixture()
def devices(fleet_broker: BrokerUnderTest, tmp_path: Path) -> Iterator[List[SimDevice]]:
    started: List[SimDevice] = []
    yield started
    for device in started:
        device.stop()


def start_device(
    broker: BrokerUnderTest, tmp_path: Path, index: int, started: List[SimDevice], **options: object
) -> SimDevice:
    device = SimDevice(index, broker.device_mqtt(tmp_path / "secret"), tmp_path / "sim", ["fleet"], **options)  # type: ignore[arg-type]
    device.start()
    started.append(device)
    assert device.telemetry.link.wait_connected(30), device.telemetry.link.counters
    return device


def test_auto_protocol_presence_listing_and_group_push(
    fleet_broker: BrokerUnderTest, devices: List[SimDevice], tmp_path: Path
) -> None:
    group = [start_device(fleet_broker, tmp_path, 100 + i, devices) for i in range(3)]
    assert {d.telemetry.link.counters.protocol for d in group} == {fleet_broker.protocol}
    listed = edgectl(fleet_broker, "devices", "--expect", "3")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows if r[0].startswith("sim-001")] == [(d.id, "online") for d in group]
    if fleet_broker.protocol == "3.1.1":
        assert (
            "closed the connection on an MQTT 5 CONNECT without a CONNACK; connected with MQTT 3.1.1" in listed.stderr
        )
        forced = edgectl(fleet_broker, "--mqtt-version", "5", "devices")
        assert (
            forced.returncode == 3 and "closed the connection on an MQTT 5 CONNECT without a CONNACK" in forced.stderr
        )

    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"patch": {"telemetry": {"period_s": 2}}}))
    pushed = edgectl(fleet_broker, "push", "--group", "fleet", str(patch), "--version", "5", "--expect", "3", "--quiet")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "3 expected, 3 answered: 3 applied" in pushed.stdout
    assert [d.host.config.version for d in group] == [5, 5, 5]


def test_last_will_and_a_push_queued_while_the_device_was_away(
    fleet_broker: BrokerUnderTest, devices: List[SimDevice], tmp_path: Path
) -> None:
    # The Last Will of a device that dies without a word.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tools")]))
    command = [sys.executable, "-m", "fleet_sim.run", "--worker", "--first", "200", "--count", "1"]
    command += [
        "--report",
        str(tmp_path / "r.json"),
        "--workdir",
        str(tmp_path / "w"),
        "--port",
        str(fleet_broker.device_port),
    ]
    if fleet_broker.username:
        mqtt = fleet_broker.device_mqtt(tmp_path / "secret")
        command += ["--username", mqtt["username"], "--password-file", mqtt["password_file"]]
    observer = operator_session(fleet_broker, "edged/sim-00200/status", "edged/sim-00201/config/result")
    victim = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert victim.stdout is not None and victim.stdout.readline().strip() == "ready 1"
        wait_for(observer, "edged/sim-00200/status", lambda d: isinstance(d, dict) and d.get("state") == "online")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        will = wait_for(
            observer, "edged/sim-00200/status", lambda d: isinstance(d, dict) and d.get("state") == "offline"
        )
        assert will["reason"] == "connection lost"

        # A push to a device that is away waits in its session and is applied on its return.
        away = start_device(fleet_broker, tmp_path, 201, devices)
        away.stop()
        devices.remove(away)
        patch = tmp_path / "patch.json"
        patch.write_text(json.dumps({"patch": {"telemetry": {"period_s": 3}}}))
        unanswered = edgectl(fleet_broker, "--timeout", "2", "push", "sim-00201", str(patch), "--version", "7")
        assert unanswered.returncode == 3
        back = start_device(fleet_broker, tmp_path, 201, devices)
        result = wait_for(observer, "edged/sim-00201/config/result", lambda d: d.get("version") == 7, timeout_s=30)
        assert result["status"] == "applied" and back.host.config.version == 7
    finally:
        if victim.poll() is None:
            victim.kill()
        observer.close()


def test_results_and_status_cross_a_60s_uplink_cut(
    fleet_broker: BrokerUnderTest, devices: List[SimDevice], tmp_path: Path
) -> None:
    if fleet_broker.bridge is None:
        pytest.skip("only a bridged broker has an uplink to cut")
    device = start_device(fleet_broker, tmp_path, 300, devices, apply_s=3.0)
    observer = operator_session(fleet_broker, "edged/sim-00300/config/result", "edged/sim-00300/status")
    try:
        received = device.telemetry.link.counters.received
        patch = tmp_path / "patch.json"
        patch.write_text(json.dumps({"patch": {"telemetry": {"period_s": 3}}}))
        pusher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edged.ctl",
                *fleet_broker.edgectl_args(),
                "--timeout",
                "2",
                "push",
                "sim-00300",
                str(patch),
                "--version",
                "9",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while device.telemetry.link.counters.received == received and time.monotonic() < deadline:
            time.sleep(0.05)
        fleet_broker.bridge.proxy.cut()  # the device is applying; its result has nowhere to go
        pusher.wait(30)
        device.stop()  # ... and it restarts while the uplink is down
        devices.remove(device)
        again = start_device(fleet_broker, tmp_path, 300, devices)
        time.sleep(60)
        fleet_broker.bridge.proxy.restore()
        result = wait_for(observer, "edged/sim-00300/config/result", lambda d: d.get("version") == 9, timeout_s=30)
        assert result["status"] == "applied"
        instance = again.telemetry.link.guard.instance
        wait_for(
            observer,
            "edged/sim-00300/status",
            lambda d: isinstance(d, dict) and d.get("instance") == instance,
            timeout_s=30,
        )
    finally:
        observer.close()
