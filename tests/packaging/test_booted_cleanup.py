"""The boot harness leaves nothing behind when the boot itself fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.packaging.booted import BootedTree


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_failed_boot_leaves_no_mounts_cgroups_or_files(tmp_path: Path) -> None:
    tree = BootedTree(rootfs=tmp_path / "no-such-tree")
    try:
        with pytest.raises(RuntimeError, match="namespace exited"):
            tree.boot(timeout=20)
    finally:
        tree.shutdown()
    assert not tree.cgroup.exists()
    assert not tree.work.exists()
    assert str(tree.work) not in Path("/proc/self/mountinfo").read_text()
