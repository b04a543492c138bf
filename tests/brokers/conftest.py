"""One parametrised broker fixture for the fleet behaviour tests: mosquitto; a two-node
RabbitMQ cluster (devices on node 1, edgectl on node 2); an edge mosquitto bridged to a
central one (devices at the edge, edgectl at the centre); ejabberd's mod_mqtt. Each starts
once per module (a RabbitMQ cluster takes half a minute) on loopback ports of its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tests.brokers import ejabberd, rabbitmq
from tests.brokers.bridge import BridgedMosquitto
from tests.mqtt.broker import Mosquitto


@dataclass
class BrokerUnderTest:
    name: str
    device_port: int  # where devices connect
    operator_port: int  # where edgectl and consumers connect
    protocol: str  # what edged's protocol "auto" ends up speaking
    username: Optional[str] = None
    password: Optional[str] = None
    bridge: Optional[BridgedMosquitto] = None

    def device_mqtt(self, folder: Path) -> Dict[str, Any]:
        section: Dict[str, Any] = {"host": "127.0.0.1", "port": self.device_port, "protocol": "auto"}
        section["backoff_max_s"] = 2
        if self.username:
            folder.mkdir(parents=True, exist_ok=True)
            secret = folder / "mqtt.password"
            secret.write_text(f"{self.password}\n")
            os.chmod(secret, 0o600)
            section.update(username=self.username, password_file=str(secret))
        return section

    def edgectl_args(self) -> List[str]:
        args = ["--host", "127.0.0.1", "--port", str(self.operator_port)]
        if self.username:
            args += ["--username", self.username, "--password", str(self.password)]
        return args


BROKERS = ["mosquitto", "rabbitmq-cluster", "mosquitto-bridge", "ejabberd"]


@pytest.fixture(scope="module", params=BROKERS)
def fleet_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    if name == "mosquitto":
        server = Mosquitto(folder).start()
        yield BrokerUnderTest(name, server.port, server.port, "5")
        server.stop()
    elif name == "rabbitmq-cluster":
        why = rabbitmq.available()
        if why:
            pytest.skip(why)
        cluster = rabbitmq.RabbitCluster(folder).start()
        try:
            yield BrokerUnderTest(name, cluster.mqtt_ports[0], cluster.mqtt_ports[1], "3.1.1")
        finally:
            cluster.stop()
    elif name == "mosquitto-bridge":
        bridged = BridgedMosquitto(folder).start()
        yield BrokerUnderTest(name, bridged.edge.port, bridged.central.port, "5", bridge=bridged)
        bridged.stop()
    else:
        why = ejabberd.available()
        if why:
            pytest.skip(why)
        server = ejabberd.Ejabberd().start()
        try:
            yield BrokerUnderTest(name, server.port, server.port, "5", server.username, server.password)
        finally:
            server.stop()
