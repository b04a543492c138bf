"""Which CPU cores ONNX Runtime's threads run on, and the core edged keeps for its own.

edged always hands ONNX Runtime a thread count, never 0. Left to choose (0), ONNX Runtime
starts one thread per physical core of the whole machine and pins each pool thread to one
of them, whatever CPUs the process was given (its threading guide; seen with ONNX Runtime
1.30 under ``taskset -c 2,3`` on a 16-core host: 15 pool threads pinned to CPUs 1-15, and
with 1.32 under ``taskset -c 0`` on a 2-core one: its pool thread pinned to CPU 1). Under
systemd's ``CPUAffinity=`` or taskset its threads thus leave the CPUs the operator gave
edged; under a cpuset (``AllowedCPUs=``, a container's) the pins fail and the machine-sized
pool crowds the few CPUs there are; where a seccomp filter refuses ``sched_setaffinity``
every pool thread logs an error at each model load (its env.cc, ThreadMain: "Specify the
number of threads explicitly so the affinity is not set").

So on hosts below ``KEEP_CORE_FROM`` cores edged asks for ONNX Runtime's own layout,
counted within the CPUs this process may use: a thread per core, pool threads pinned one
per core from the second on, the calling thread unpinned.

On hosts with more cores, that layout leaves edged's own threads (sources, preprocessing,
the sink, the next-batch helper) to run on cores the engine is computing on: a parallel
operator waits for its slowest part, and the part whose core a pipeline thread took is
late. On a 16-core host with the MobileNetV2-shaped model, edged delivered 0.80-0.86 of the
engine alone that way (tools/bench_pipeline.py, docs/preprocessing.md).

So on hosts with at least ``KEEP_CORE_FROM`` physical cores, a model with ``threads: 0``
gets one thread fewer than the cores. Its pool threads are pinned one per core from the
third core on; the thread that calls the engine (the pipeline's infer thread, which
computes a share of each operator too) is pinned to the second; the first is left to
everything else. edged's other threads are not pinned: the scheduler wakes them on the core
nobody computes on, and decoders may still use more when they need it.

Every such engine pins its pool the same way, as ONNX Runtime's default pins every
session's pool to the same cores. The calling thread's core is held by one engine at a
time: the first infer thread to call claims it; another model's infer thread meanwhile runs
unpinned, and claims the core at its next call once the holder has closed (a model reloaded
by a config push starts beside the old one, and takes the core over when the old one ends).

A model served from several engines (``instances``, two by default on these hosts) shares
the cores but one out between them instead, unpinned: a core's worth stays with edged's
threads, wherever the scheduler runs them.

Below ``KEEP_CORE_FROM`` cores, giving a core away costs the engine more than the pipeline
takes from it. 16 cores were measured; hosts between 8 and 16 were not, and 8 is where one
core is an eighth of the engine.

Where this process may not set its threads' CPUs at all (edged.cpu_limits.pinning_allowed),
every layout keeps its thread count and pins nothing. Under a CPU quota of fewer CPUs than
cores (edged.cpu_limits.cpu_quota) the engine gets a thread per CPU of it, unpinned.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

from edged.cpu_limits import quota_cores
from edged.sysfs import read_text
from edged.versions import version_tuple

__all__ = [
    "KEEP_CORE_FROM",
    "CallerCore",
    "EngineCores",
    "cpu_text",
    "engine_cores",
    "host_cores",
    "parse_cpu_list",
]

KEEP_CORE_FROM = 8
# session.intra_op_thread_affinities came with ONNX Runtime 1.14 (its C API: "since Version 1.14").
_AFFINITIES = (1, 14)

Core = Tuple[int, ...]  # the logical CPUs of one physical core


def parse_cpu_list(text: str) -> List[int]:
    """A kernel CPU list ("0-3,8,10-11") as CPU numbers."""
    cpus: List[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def host_cores(sys_root: str = "/sys", allowed: Optional[Sequence[int]] = None) -> List[Core]:
    """The physical cores this process may run on, each as its allowed logical CPUs, in
    CPU order. A CPU whose siblings cannot be read counts as a core of its own."""
    usable = sorted(os.sched_getaffinity(0) if allowed is None else allowed)
    cores: List[Core] = []
    seen: Set[int] = set()
    for cpu in usable:
        if cpu in seen:
            continue
        text = read_text(os.path.join(sys_root, f"devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"))
        siblings = parse_cpu_list(text) if text else [cpu]
        core = tuple(c for c in siblings if c in usable) or (cpu,)
        seen.update(core)
        cores.append(core)
    return cores


@dataclass(frozen=True)
class EngineCores:
    threads: int  # intra_op_num_threads
    pool_affinity: str  # session.intra_op_thread_affinities ("": ONNX Runtime places its threads)
    caller_cpus: FrozenSet[int]  # where the thread that calls the engine runs (empty: anywhere)
    kept_cpus: FrozenSet[int]  # the core left to edged's own threads (empty: none)
    reason: str
    # Engines unpinned, their threads one core short of the host's: a core's worth left to
    # edged's own threads, wherever the scheduler puts them.
    spare_core: bool = False

    @property
    def keeps_core(self) -> bool:
        return bool(self.kept_cpus) or self.spare_core

    @property
    def pinned(self) -> bool:
        return bool(self.caller_cpus)

    def session_entries(self) -> Dict[str, str]:
        return {"session.intra_op_thread_affinities": self.pool_affinity} if self.pool_affinity else {}


def cpu_text(cpus: Iterable[int]) -> str:
    """CPU numbers as a log line shows them: "1,2,3"."""
    return ",".join(str(cpu) for cpu in sorted(cpus))


def _cpus(cores: Sequence[Core]) -> str:
    return cpu_text(c for core in cores for c in core)


def _pool_affinity(cores: Sequence[Core]) -> str:
    """One group per pool thread, one core each; ONNX Runtime numbers logical processors
    from 1 in this string."""
    return ";".join(",".join(str(c + 1) for c in core) for core in cores)


def engine_cores(
    threads: int,
    cores: Sequence[Core],
    ort_version: str,
    instances: int = 1,
    pinning: bool = True,
    quota: Optional[float] = None,
) -> EngineCores:
    """Where a model's ONNX Runtime threads run: ``threads`` and ``instances`` from its
    config, ``cores`` from :func:`host_cores`, ``pinning`` and ``quota`` from
    edged.cpu_limits. Several engines of one model with ``threads: 0`` share the cores out
    between them, unpinned: each engine's calls then run beside the others' instead of
    waiting for one pool (docs/preprocessing.md, "Fifth pass"). Under a quota of fewer CPUs
    than cores, the threads are as many as the quota's CPUs, and unpinned: the quota is
    time on any core, not a set of them."""
    limited = quota_cores(quota, len(cores))
    narrowed = limited < len(cores)
    cores = cores[:limited]
    if threads > 0:
        return EngineCores(threads, "", frozenset(), frozenset(), f"{threads} threads as configured, not pinned")
    if instances > 1:
        spare = len(cores) >= KEEP_CORE_FROM
        each = max(1, (len(cores) - spare) // instances)
        unit = "thread" if each == 1 else "threads"
        shared = f"{each} {unit} for each of {instances} engines on {len(cores)} cores, not pinned"
        if spare:
            shared += "; a core's worth left to edged's own threads"
        return EngineCores(each, "", frozenset(), frozenset(), shared, spare)
    count = max(1, len(cores))
    unit = "thread" if count == 1 else "threads"
    cannot = ""
    if narrowed:
        cannot = f"a CPU quota of {quota:g} CPUs"
    elif not pinning:
        cannot = "this process may not set its threads' CPUs"
    elif version_tuple(ort_version)[:2] < _AFFINITIES:
        cannot = f"ONNX Runtime {ort_version} cannot pin them"
    if len(cores) < KEEP_CORE_FROM:
        where = f"{count} {unit}, one per core edged may use"
        if cannot:
            return EngineCores(count, "", frozenset(), frozenset(), f"{where}, not pinned ({cannot})")
        if count == 1:
            return EngineCores(count, "", frozenset(), frozenset(), where)
        # ONNX Runtime's own default layout (the module's docstring), within this process's CPUs.
        pool = cores[1:]
        return EngineCores(
            count, _pool_affinity(pool), frozenset(), frozenset(), f"{where}, pool pinned to CPUs {_cpus(pool)}"
        )
    engine = len(cores) - 1
    if cannot:
        unpinned = f"{engine} threads of {len(cores)} cores, not pinned ({cannot})"
        return EngineCores(
            engine, "", frozenset(), frozenset(), f"{unpinned}; a core's worth left to edged's own threads", True
        )
    return EngineCores(
        engine,
        _pool_affinity(cores[2:]),
        frozenset(cores[1]),
        frozenset(cores[0]),
        f"{engine} threads pinned to CPUs {_cpus(cores[1:])}; CPU {_cpus(cores[:1])} left to edged's own threads",
    )


class CallerCore:
    """The core of the one engine call thread that is pinned at a time (see the module's
    docstring): claimed by the first infer thread of a model with the pinned layout, free
    again when that engine closes, then claimed by the next one that calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: Optional[object] = None

    @property
    def free(self) -> bool:
        return self._holder is None

    def claim(self, owner: object) -> bool:
        with self._lock:
            if self._holder is None:
                self._holder = owner
            return self._holder is owner

    def release(self, owner: object) -> None:
        with self._lock:
            if self._holder is owner:
                self._holder = None
