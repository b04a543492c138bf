"""edged.cpu_limits on fixture control-group trees modelled on what systemd and container
runtimes write (cgroup v1 and v2); tests/backends/test_onnxruntime_cores.py reads a real
group this kernel makes."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

from edged.cpu_limits import cpu_quota, quota_cores


def _cgroup_tree(root: Path, membership: str, limits: Dict[str, str]) -> Tuple[str, str]:
    """A fixture /proc/self/cgroup and /sys/fs/cgroup: ``limits`` maps a file under the
    cgroup root (e.g. "system.slice/cpu.max") to its content."""
    proc, cgroup = root / "proc", root / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self/cgroup").write_text(membership)
    cgroup.mkdir()
    for name, text in limits.items():
        (cgroup / name).parent.mkdir(parents=True, exist_ok=True)
        (cgroup / name).write_text(text + "\n")
    return str(proc), str(cgroup)


def test_cpu_quota_reads_the_tightest_limit_up_the_groups(tmp_path: Path) -> None:
    # cgroup v2, as systemd writes CPUQuota=: the service's cpu.max, a slice above it tighter.
    v2 = _cgroup_tree(
        tmp_path / "v2",
        "0::/system.slice/edged.service\n",
        {"system.slice/edged.service/cpu.max": "300000 100000", "system.slice/cpu.max": "250000 100000"},
    )
    assert cpu_quota(*v2) == 2.5
    unlimited = _cgroup_tree(
        tmp_path / "max", "0::/system.slice/edged.service\n", {"system.slice/cpu.max": "max 100000"}
    )
    assert cpu_quota(*unlimited) is None
    # A container's cgroup namespace: the group reads "/", the mount's root is its own group.
    container = _cgroup_tree(tmp_path / "ns", "0::/\n", {"cpu.max": "150000 100000"})
    assert cpu_quota(*container) == 1.5
    # cgroup v1 (JetPack 5's Ubuntu 20.04): cpu,cpuacct hierarchy, -1 for no quota.
    v1 = _cgroup_tree(
        tmp_path / "v1",
        "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
            "cpu,cpuacct/docker/cpu.cfs_quota_us": "-1",
            "cpu,cpuacct/docker/cpu.cfs_period_us": "100000",
        },
    )
    assert cpu_quota(*v1) == 0.5
    assert cpu_quota(str(tmp_path / "absent"), str(tmp_path / "absent")) is None


def test_a_quota_keeps_a_thread_per_whole_or_part_cpu() -> None:
    assert quota_cores(None, 16) == 16
    assert quota_cores(2.0, 16) == 2
    assert quota_cores(1.5, 16) == 2
    assert quota_cores(0.25, 16) == 1
    assert quota_cores(32.0, 16) == 16
