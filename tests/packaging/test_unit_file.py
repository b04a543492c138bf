"""The shipped unit file: systemd's own offline security review and syntax check."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edged.service"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def test_security_exposure_at_most_1_9() -> None:
    # --threshold counts on the 0..100 scale the summary prints divided by ten.
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=19", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for edged\.service: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 1.9, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every key was understood (an unknown key is ignored with a warning, silently weakening it).
    assert "Unknown key" not in proc.stderr, proc.stderr


def test_gpu_access_is_an_allow_list_not_private_devices() -> None:
    text = UNIT.read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and settings["DevicePolicy"] == "closed"
    assert "PrivateDevices" not in settings
    allowed = [line.split("=", 1)[1].split()[0] for line in text.splitlines() if line.startswith("DeviceAllow=")]
    for node in ("/dev/nvmap", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-nvdla0", "/dev/nvidiactl", "/dev/nvidia-uvm"):
        assert node in allowed, node
    # Device classes as named in /proc/devices of an NVIDIA dGPU host (H100, driver of 2025).
    for cls in ("char-nvidia", "char-nvidia-uvm", "char-nvidia-caps"):
        assert cls in allowed, cls
