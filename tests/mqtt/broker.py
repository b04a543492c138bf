"""A real mosquitto (Debian's /usr/sbin/mosquitto) per test, on a free loopback port.

Plain, TLS with a throw-away CA made by the openssl command, or password file + ACL.
Restartable on the same port, with its persistence, for outage tests.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def issue_cert(
    ca: Dict[str, Path], folder: Path, name: str, subject: str, san: Optional[str] = None
) -> Dict[str, Path]:
    """A key and a certificate for ``subject`` signed by ``ca`` (see make_ca), with the
    subjectAltName ``san`` where given."""
    key, csr, crt = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(key), "-out", str(csr))
    args = ["x509", "-req", "-in", str(csr), "-CA", str(ca["ca"]), "-CAkey", str(ca["ca"].with_suffix(".key"))]
    args += ["-CAcreateserial", "-days", "2", "-out", str(crt)]
    if san is not None:
        ext = folder / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\n")
        args += ["-extfile", str(ext)]
    _openssl(*args)
    return {"cert": crt, "key": key}


def make_ca(folder: Path, name: str = "ca") -> Dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=edged test {name}",
        "-keyout", str(ca_key), "-out", str(ca_crt),
    )  # fmt: skip
    server = issue_cert({"ca": ca_crt}, folder, "server", "/CN=localhost", san="IP:127.0.0.1,DNS:localhost")
    return {"ca": ca_crt, **server}


class Mosquitto:
    def __init__(
        self,
        workdir: Path,
        tls: Optional[Dict[str, Path]] = None,
        users: Optional[Dict[str, str]] = None,
        acl: Optional[List[str]] = None,
        options: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        # Stay the invoking user: as root, mosquitto would switch to "mosquitto" and lose
        # access to the test's private temporary files.
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {workdir}/"]
        lines.append(f"user {getpass.getuser()}")
        lines += [f"log_dest file {workdir}/mosquitto.log", "log_type all"]
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        if users:
            passwd = workdir / "passwd"
            passwd.write_text("")
            for user, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_file = workdir / "acl"
            acl_file.write_text("\n".join(acl) + "\n")
            lines.append(f"acl_file {acl_file}")
        lines += list(options)  # further mosquitto.conf lines, e.g. queue limits
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: "Optional[subprocess.Popen[bytes]]" = None

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else b""
                raise RuntimeError(f"mosquitto exited: {err!r}\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file on the way out
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""
