"""edgectl through a TLS listener with a throw-away CA and password authentication."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edged.ctl.session import BrokerOptions, Session
from tests.mqtt.broker import Mosquitto, make_ca


def test_tls_and_credentials(tmp_path: Path) -> None:
    pki = make_ca(tmp_path / "pki")
    ca, cert = pki["ca"], pki["cert"]
    broker = Mosquitto(tmp_path / "broker", tls=pki, users={"ops": "s3cret"})
    broker.start()
    try:
        options = BrokerOptions(
            host="localhost", port=broker.port, tls=True, cafile=str(ca), username="ops", password="s3cret"
        )
        device = Session(options, client_id="fake-device")
        device.connect()
        device.publish("edged/node-9/status", json.dumps({"state": "offline"}).encode(), retain=True)
        device.close()
        config = tmp_path / "edged.yaml"
        config.write_text(f"mqtt: {{host: localhost, port: {broker.port}, username: ops, tls: {{ca_file: {ca}}}}}\n")
        base = [sys.executable, "-m", "edged.ctl", "--config", str(config), "--timeout", "5"]
        env = {"EDGECTL_PASSWORD": "s3cret", "PATH": "/usr/bin:/bin"}
        out = subprocess.run([*base, "devices", "--wait", "0.5"], capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[1].split()[:2] == ["node-9", "offline"]
        wrong = subprocess.run(
            [*base, "--password", "wrong", "devices"], capture_output=True, text=True, env=env, timeout=30
        )
        assert wrong.returncode == 3 and "connection refused" in wrong.stderr
        untrusted = subprocess.run(
            [*base, "--cafile", str(cert), "devices"], capture_output=True, text=True, env=env, timeout=30
        )
        assert untrusted.returncode == 3 and "certificate verify failed" in untrusted.stderr
        missing = subprocess.run(
            [*base, "--cafile", str(tmp_path / "nope.pem"), "devices"], capture_output=True, text=True, env=env
        )
        assert missing.returncode == 3 and "TLS files" in missing.stderr
    finally:
        broker.stop()
