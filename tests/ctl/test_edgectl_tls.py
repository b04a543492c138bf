"""edgectl through a TLS listener with a throw-away CA and password authentication."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Tuple

from edged.control.session import BrokerOptions, Session
from tests.control.broker import Mosquitto

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _pki(folder: Path) -> Tuple[Path, Path, Path]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=edged test CA")
    run("req", *EC, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "1", "-extfile", "san.ext",
    )  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


def test_tls_and_credentials(tmp_path: Path) -> None:
    ca, cert, key = _pki(tmp_path)
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "ops", "s3cret"], check=True)
    broker = Mosquitto(tmp_path / "broker", persistence=False, tls=(ca, cert, key), password_file=passwords)
    broker.start()
    try:
        options = BrokerOptions(
            host="localhost", port=broker.port, tls=True, cafile=str(ca), username="ops", password="s3cret"
        )
        device = Session(options, client_id="fake-device")
        device.connect()
        device.publish("edged/node-9/status", json.dumps({"status": "online"}).encode(), retain=True)
        device.close()
        config = tmp_path / "edged.yaml"
        config.write_text(f"mqtt: {{host: localhost, port: {broker.port}, username: ops, tls: {{cafile: {ca}}}}}\n")
        base = [sys.executable, "-m", "edged.ctl", "--config", str(config), "--timeout", "5"]
        env = {"EDGECTL_PASSWORD": "s3cret", "PATH": "/usr/bin:/bin"}
        out = subprocess.run([*base, "devices", "--wait", "0.5"], capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[1].split() == ["node-9", "online"]
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
