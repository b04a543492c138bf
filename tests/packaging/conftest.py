"""The .deb, built once per test session with `make deb` (Debian's tooling, Debian's python)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="session")
def deb() -> Path:
    for tool in ("dpkg-buildpackage", "dh", "lintian"):
        if shutil.which(tool, path=DEBIAN_PATH) is None:
            pytest.skip(f"needs {tool} (tools/install-deps test installs it)")
    proc = subprocess.run(["make", "-s", "deb"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (path,) = sorted((REPO / "var" / "deb").glob("edged_*_all.deb"))
    return path
