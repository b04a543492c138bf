"""ejabberd 23.01's mod_mqtt (Debian 12) as an MQTT 5 broker other than mosquitto, on loopback.

mod_mqtt takes no anonymous clients: a user is registered. ejabberdctl runs its commands
as the ``ejabberd`` user (through su), so the node's folders belong to that user and sit
outside the test's private temporary folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from tests.mqtt.broker import free_port

EJABBERDCTL = shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl"


def available() -> Optional[str]:
    if not os.path.exists(EJABBERDCTL):
        return "ejabberd is not installed (tools/install-deps test)"
    try:
        pwd.getpwnam("ejabberd")
    except KeyError:
        return "the ejabberd user does not exist (the ejabberd package creates it)"
    return None


class Ejabberd:
    username = "edge"
    password = "edge-test-pw"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="edged-ejabberd-"))
        self.port = free_port()
        self.proc: "Optional[subprocess.Popen[bytes]]" = None
        etc = self.dir / "etc"
        for sub in ("etc", "log", "spool"):
            (self.dir / sub).mkdir()
        (etc / "ejabberdctl.cfg").write_text(
            f"ERLANG_NODE=ej{self.port}@localhost\nINET_DIST_INTERFACE=127.0.0.1\nERL_DIST_PORT={free_port()}\n"
            f'ERL_OPTIONS="+S 1:1 +sbwt none"\nEJABBERD_PID_PATH={self.dir}/ejabberd.pid\n'
        )
        (etc / "ejabberd.yml").write_text(
            "hosts: [localhost]\nauth_method: [internal]\nloglevel: warning\n"
            f'listen: [{{port: {self.port}, ip: "127.0.0.1", module: mod_mqtt}}]\n'
            "modules: {mod_mqtt: {}}\n"
        )
        (etc / "inetrc").write_text('{lookup,[file,native]}.\n{host,{127,0,0,1}, ["localhost"]}.\n')
        user = pwd.getpwnam("ejabberd")
        self.dir.chmod(0o755)
        for path in [self.dir, *self.dir.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)

    def _ctl(self) -> List[str]:
        return [
            EJABBERDCTL,
            "--config-dir",
            f"{self.dir}/etc",
            "--logs",
            f"{self.dir}/log",
            "--spool",
            f"{self.dir}/spool",
        ]

    def start(self, timeout_s: float = 240) -> "Ejabberd":
        with open(self.dir / "foreground.log", "wb") as log:
            self.proc = subprocess.Popen(
                [*self._ctl(), "foreground"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ejabberd exited: {(self.dir / 'foreground.log').read_text(errors='replace')[-2000:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"ejabberd did not listen on {self.port} within {timeout_s:g}s")
        subprocess.run(
            [*self._ctl(), "register", self.username, "localhost", self.password],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run([*self._ctl(), "stop"], capture_output=True, timeout=120)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
