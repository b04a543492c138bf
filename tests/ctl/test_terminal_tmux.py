"""edgectl in a real terminal: tmux runs it at a given size, the pane is captured as a person
sees it, and what is on screen must fit: `watch` with 8 models in 100 columns with no
wrapped row, `devices` in 80."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.metrics.daemon import REPO, models, start, write_config
from tests.mqtt.broker import Mosquitto

TMUX = shutil.which("tmux") or "/usr/bin/tmux"


class Tmux:
    """A tmux server of this test's own (its own socket), killed at the end."""

    def __init__(self) -> None:
        self.socket = f"edged-test-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def start(self, command: str, width: int, height: int) -> None:
        self.run("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), command)
        self.run("set-option", "-t", "t", "remain-on-exit", "on")

    def screen(self) -> List[str]:
        # -J joins lines the terminal wrapped: a wrapped row shows as one line wider than the pane.
        return self.run("capture-pane", "-p", "-J", "-t", "t").rstrip("\n").split("\n")

    def kill(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True)
        # The next session gets a fresh server: one still shutting down refuses new sessions.
        self.socket = f"edged-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def tmux() -> Iterator[Tmux]:
    terminal = Tmux()
    yield terminal
    terminal.kill()


def _edgectl(port: int, *args: str) -> str:
    words = [sys.executable, "-m", "edged.ctl", "--host", "127.0.0.1", "--port", str(port), *args]
    return f"cd {REPO} && TERM=xterm-256color PYTHONPATH={REPO} " + " ".join(words)


def _wait_screen(tmux: Tmux, ready: str, timeout: float = 30.0) -> List[str]:
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux.screen()
        if any(ready in line for line in screen) or time.monotonic() > deadline:
            return screen
        time.sleep(0.3)


@pytest.mark.slow
def test_watch_with_8_models_fits_100_columns_and_devices_fits_80(
    broker: Mosquitto, tmp_path: Path, demo_assets: Path, tmux: Tmux
) -> None:
    names = [f"camera-{i}-detector" for i in range(8)]
    mqtt = {"host": "127.0.0.1", "port": broker.port, "backoff_max_s": 0.5}
    edged = start(write_config(tmp_path, {"mqtt": mqtt, "models": models(demo_assets, tmp_path, names, fps=5)}))
    try:
        tmux.start(_edgectl(broker.port, "watch", "metrics-1"), 100, 30)
        screen = _wait_screen(tmux, "camera-7-detector  running")
        assert all(len(line) <= 100 for line in screen), "\n".join(screen)
        header = next(i for i, line in enumerate(screen) if line.startswith("MODEL"))
        rows = screen[header + 1 : header + 9]
        assert [row.split()[0] for row in rows] == names, "\n".join(screen)
        assert all(row.split()[1:3] == ["running", "cpu"] for row in rows), "\n".join(screen)
        assert screen[0].startswith("metrics-1 · online · edged ") and "last seen" in screen[0]
        assert screen[1].startswith("board ") and "°C" in screen[1]  # the Orin fixture's power and temperatures
        tmux.kill()

        tmux.start(_edgectl(broker.port, "devices", "--wait", "0.5") + "; sleep 30", 80, 12)
        screen = _wait_screen(tmux, "1 devices:")
        assert all(len(line) <= 80 for line in screen), "\n".join(screen)
        row = next(line for line in screen if line.startswith("metrics-1"))
        # The fleet view (presence answers): state, last telemetry, edged and config versions, models.
        assert row.split()[1] == "online" and "ago" in row and row.endswith("8 running")
    finally:
        edged.send_signal(signal.SIGTERM)
        _, err = edged.communicate(timeout=20)
    assert edged.returncode == 0, err[-2000:]
