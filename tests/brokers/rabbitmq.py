"""A two-node RabbitMQ cluster with its MQTT plugin, on loopback, from Debian's package.

RabbitMQ 3.10.8 (Debian 12) speaks MQTT 3.1.1 only; an MQTT 5 CONNECT is closed without a
CONNACK. Retained messages reach only exact-topic subscribers and stay on the node that
stored them (rabbitmq-server issues 8096 and 8824). The environment follows
rabbitmq-env's variables; every node keeps its Erlang distribution on 127.0.0.1 with its
own epmd port, so nothing is shared with another cluster on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

from tests.mqtt.broker import free_port

SBIN = Path("/usr/lib/rabbitmq/bin")


def available() -> Optional[str]:
    """None when the cluster can run here, else why not."""
    if not (SBIN / "rabbitmq-server").exists():
        return "rabbitmq-server is not installed (tools/install-deps test)"
    return None


def _wait_port(port: int, timeout_s: float, proc: "subprocess.Popen[bytes]", log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"rabbitmq did not listen on {port} within {timeout_s:g}s")


class RabbitCluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.epmd_port = free_port()
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text("EDGEDTESTCOOKIE")
        cookie.chmod(0o400)
        self.nodes: List[Dict[str, str]] = []
        self.mqtt_ports: List[int] = []
        self.procs: List["subprocess.Popen[bytes]"] = []
        # Our own epmd, in the foreground, so that we end (and reap) it ourselves.
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        self.epmd = subprocess.Popen(
            [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _env(self, n: int) -> Dict[str, str]:
        node = self.workdir / f"node{n}"
        amqp, dist, mqtt = free_port(), free_port(), free_port()
        node.mkdir(parents=True, exist_ok=True)
        (node / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{amqp}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{mqtt}\n"
            "mqtt.allow_anonymous = true\nmqtt.default_user = guest\nmqtt.default_pass = guest\n"
            "loopback_users = none\n"
        )
        (node / "env.conf").write_text("")
        self.mqtt_ports.append(mqtt)
        env = dict(os.environ)
        env.update(
            HOME=str(self.home),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_NODENAME=f"node{n}@localhost",
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(amqp),
            RABBITMQ_DIST_PORT=str(dist),
            RABBITMQ_MNESIA_BASE=str(node / "mnesia"),
            RABBITMQ_LOG_BASE=str(node / "log"),
            RABBITMQ_PID_FILE=str(node / "pid"),
            RABBITMQ_CONFIG_FILE=str(node / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(node / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(node / "env.conf"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 1:1 +sbwt none -kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _ctl(self, n: int, *args: str, timeout_s: float = 120) -> None:
        subprocess.run(
            [str(SBIN / "rabbitmqctl"), *args],
            env=self.nodes[n - 1],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )

    def start(self) -> "RabbitCluster":
        for n in (1, 2):
            env = self._env(n)
            self.nodes.append(env)
            subprocess.run(
                [str(SBIN / "rabbitmq-plugins"), "--offline", "enable", "rabbitmq_mqtt"],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
        # Both nodes boot at once (each 10-20 s on one scheduler thread), then the second joins.
        for n, env in enumerate(self.nodes, 1):
            log = self.workdir / f"node{n}" / "stdout.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [str(SBIN / "rabbitmq-server")],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.procs.append(proc)
        for n, proc in enumerate(self.procs, 1):
            _wait_port(self.mqtt_ports[n - 1], 180, proc, self.workdir / f"node{n}" / "stdout.log")
        self._ctl(2, "stop_app")
        self._ctl(2, "join_cluster", "node1@localhost")
        self._ctl(2, "start_app")
        _wait_port(self.mqtt_ports[1], 120, self.procs[1], self.workdir / "node2" / "stdout.log")
        return self

    def stop(self) -> None:
        for n in range(len(self.procs), 0, -1):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._ctl(n, "stop", timeout_s=60)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.epmd.terminate()
        self.epmd.wait(10)
