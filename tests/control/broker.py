"""A real mosquitto broker per test, on a free port, restartable with its persistence
(the Debian package's /usr/sbin/mosquitto)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional, Tuple

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """``tls`` is (cafile, certfile, keyfile) for the listener; ``password_file`` a
    mosquitto_passwd file, which turns anonymous access off."""

    def __init__(
        self,
        workdir: Path,
        persistence: bool = True,
        tls: Optional[Tuple[Path, Path, Path]] = None,
        password_file: Optional[Path] = None,
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        extra = ""
        if tls:
            extra += f"cafile {tls[0]}\ncertfile {tls[1]}\nkeyfile {tls[2]}\n"
        if password_file:
            extra += f"password_file {password_file}\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n" + extra + f"allow_anonymous {'false' if password_file else 'true'}\n"
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {workdir}/\n"
            f"log_dest file {workdir}/mosquitto.log\n"
            "log_type all\n"
            # Started as root, mosquitto drops to the 'mosquitto' user, which could not
            # write its persistence file or log here: stay the user running the tests.
            f"user {getpass.getuser()}\n"
        )
        self.proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read() if self.proc.stderr else ''!r}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file on the way out
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""
