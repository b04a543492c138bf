"""Simulated devices (tools/fleet_sim) on a broker: edged's real link, control plane,
presence answers and telemetry publisher around a stand-in model set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from fleet_sim.device import SimDevice

REPO = Path(__file__).resolve().parents[2]

StartDevices = Callable[..., List[SimDevice]]


@pytest.fixture()
def sim_devices(tmp_path: Path) -> Iterator[StartDevices]:
    """``start(port, n, groups=lambda i: [...], **options)``: n started devices; all are
    stopped at the end of the test."""
    started: List[SimDevice] = []

    def start(
        port: int, count: int, groups: Callable[[int], List[str]] = lambda i: ["fleet"], **options: Any
    ) -> List[SimDevice]:
        mqtt: Dict[str, Any] = {"host": "127.0.0.1", "port": port, "backoff_max_s": 2}
        mqtt.update(options.pop("mqtt", {}))
        fail = options.pop("fail", ())
        devices = [
            SimDevice(len(started) + i, mqtt, tmp_path / "sim", groups(i), fail_applies=i in fail, **options)
            for i in range(count)
        ]
        for device in devices:
            device.start()
            started.append(device)
        for device in devices:
            assert device.telemetry.link.wait_connected(20), f"{device.id} did not connect"
        return devices

    yield start
    for device in started:
        device.stop()


def edgectl(port: int, *args: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "edged.ctl", "--host", "127.0.0.1", "--port", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
