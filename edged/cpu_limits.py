"""What this process may do with the CPUs beyond its CPU mask (os.sched_getaffinity): how
much CPU time its control groups allow it (systemd's ``CPUQuota=``, a container's
``--cpus``), and whether it may pin its threads at all. A quota is time on any core, not a
set of cores: a pool of one thread per core spends it early in each period and then waits
out the rest throttled (docs/preprocessing.md, "Eighth pass").

The files are the kernel's (Documentation/admin-guide/cgroup-v2.rst, "cpu.max": "$MAX
$PERIOD", "max" for none; Documentation/scheduler/sched-bwc.rst: ``cpu.cfs_quota_us`` over
``cpu.cfs_period_us``, -1 for none). Read here on cgroup v1 by a real group the tests make,
and on cgroup v2 on a lent 16-core host; CI sees v2 only through fixture trees."""

from __future__ import annotations

import functools
import math
import os
from typing import List, Optional

from edged.sysfs import read_text

__all__ = ["cpu_quota", "pinning_allowed", "quota_cores"]


def _cgroup_dirs(path: str) -> List[str]:
    """``path`` (a group in /proc/self/cgroup) and each group above it, up to the root."""
    parts = [part for part in path.split("/") if part]
    return ["/".join(parts[:end]) for end in range(len(parts), -1, -1)]


def _v2_limit(directory: str) -> Optional[float]:
    text = read_text(os.path.join(directory, "cpu.max"))  # "QUOTA PERIOD" or "max PERIOD"
    fields = text.split() if text else []
    if len(fields) == 2 and fields[0] != "max" and fields[0].isdigit() and fields[1].isdigit() and int(fields[1]):
        return int(fields[0]) / int(fields[1])
    return None


def _v1_limit(directory: str) -> Optional[float]:
    quota = read_text(os.path.join(directory, "cpu.cfs_quota_us"))  # -1: none
    period = read_text(os.path.join(directory, "cpu.cfs_period_us"))
    if quota and period and quota.isdigit() and period.isdigit() and int(period):
        return int(quota) / int(period)
    return None


def cpu_quota(proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> Optional[float]:
    """The CPUs' worth of time this process's control groups allow it (systemd's
    ``CPUQuota=``, a container's ``--cpus``): the tightest limit from its group up to the
    root, in cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``);
    None where nothing limits it or nothing can be read. Inside a cgroup namespace the
    group reads "/" and the mount's root is the container's own group, which is read too."""
    text = read_text(os.path.join(proc_root, "self/cgroup")) or ""
    limits: List[float] = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":
            unified = os.path.join(cgroup_root, "unified")
            bases, read = [unified if os.path.isdir(unified) else cgroup_root], _v2_limit
        elif "cpu" in controllers.split(","):
            bases, read = [os.path.join(cgroup_root, controllers), os.path.join(cgroup_root, "cpu")], _v1_limit
        else:
            continue
        base = next((b for b in bases if os.path.isdir(b)), None)
        if base is None:
            continue
        for group in _cgroup_dirs(path):
            limit = read(os.path.join(base, group))
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def quota_cores(quota: Optional[float], cores: int) -> int:
    """How many of ``cores`` a CPU quota of ``quota`` CPUs' time keeps busy: a thread per
    whole or part CPU of it (half a CPU: one thread), never more threads than cores. A part
    CPU is rounded up: the threads then still wait throttled for that part of each period
    (1.5 CPUs: two threads, idle a quarter of it), where rounding down would leave that
    share of the quota unused. Only whole quotas were measured (docs/preprocessing.md)."""
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


@functools.lru_cache(maxsize=None)
def pinning_allowed() -> bool:
    """Whether this process may set its threads' CPUs: a seccomp filter (systemd's
    ``SystemCallFilter=~@resources``, some container runtimes) refuses ``sched_setaffinity``
    with EPERM. Asked once, by setting the calling thread's CPUs to what they are."""
    try:
        os.sched_setaffinity(0, os.sched_getaffinity(0))
    except OSError:
        return False
    return True
