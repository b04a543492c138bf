"""The Debian package: contents, maintainer metadata and a clean lintian report."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.packaging.conftest import DEBIAN_PATH, REPO

pytestmark = pytest.mark.slow


def _deb(*args: str) -> str:
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout


def test_package_contents(deb: Path) -> None:
    files = {line.split()[-1].lstrip(".") for line in _deb("-c", str(deb)).splitlines()}
    for path in (
        "/usr/bin/edged",
        "/etc/edged/edged.yaml",
        "/lib/systemd/system/edged.service",
        "/usr/share/man/man1/edged.1.gz",
        "/usr/lib/python3/dist-packages/edged/systemd.py",
        "/usr/lib/python3/dist-packages/edged/config/schema.json",
        "/usr/bin/edgectl",
        "/usr/share/man/man1/edgectl.1.gz",
    ):
        assert path in files, path
    # Every package of the source tree ships (a folder without __init__.py would not).
    for init in sorted((REPO / "edged").rglob("*.py")):
        shipped = "/usr/lib/python3/dist-packages/" + str(init.relative_to(REPO))
        assert shipped in files, shipped
    assert _deb("-f", str(deb), "Architecture").strip() == "all"
    depends = _deb("-f", str(deb), "Depends")
    for name in ("python3-numpy", "python3-yaml", "python3-jsonschema", "python3-paho-mqtt", "adduser"):
        assert name in depends
    assert "python3-libnvinfer" in _deb("-f", str(deb), "Recommends")


def test_config_is_a_conffile(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path)], check=True)
    assert "/etc/edged/edged.yaml" in (tmp_path / "conffiles").read_text().split()
    # dh_installsystemd wired the unit into the maintainer scripts.
    assert "deb-systemd-helper" in (tmp_path / "postinst").read_text()


def test_lintian_reports_no_errors_or_warnings(deb: Path) -> None:
    changes = sorted(deb.parent.glob("edged_*.changes"))[-1]
    proc = subprocess.run(
        ["lintian", "--fail-on", "error,warning", str(changes)],
        capture_output=True,
        text=True,
        env={"PATH": DEBIAN_PATH, "LANG": "C.UTF-8"},
    )
    problems = [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert not problems, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
