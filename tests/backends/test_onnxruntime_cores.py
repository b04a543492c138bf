"""Where ONNX Runtime's threads run (edged.backends.onnxruntime.cores): the layout rules on
fixture CPU topologies, and real ONNX Runtime sessions honouring the pins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from edged.backends import BuildOptions
from edged.backends.onnxruntime import cores as cores_module
from edged.backends.onnxruntime.cores import CallerCore, engine_cores, host_cores, parse_cpu_list
from edged.config import parse_config
from edged.model_loading import folding_for, instances_for
from tests.backends.fixture_host import fixture_host

ort = pytest.importorskip("onnxruntime")

SINGLE = [(cpu,) for cpu in range(16)]  # 16 cores, one thread each (the lent x86 host, a Jetson's Arm cores)
PAIRS = [(cpu, cpu + 8) for cpu in range(8)]  # 8 cores with two hardware threads each, numbered as x86 Linux does


def _sysfs(root: Path, siblings: Dict[int, str]) -> str:
    """A fixture tree with the one sysfs file host_cores reads, per CPU."""
    for cpu, text in siblings.items():
        topology = root / f"devices/system/cpu/cpu{cpu}/topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(text + "\n")
    return str(root)


def test_cpu_lists_parse_as_the_kernel_writes_them() -> None:
    assert parse_cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpu_list("5") == [5]
    assert parse_cpu_list("") == []


def test_host_cores_group_hardware_threads_within_the_allowed_cpus(tmp_path: Path) -> None:
    root = _sysfs(tmp_path, {cpu: f"{cpu % 4},{cpu % 4 + 4}" for cpu in range(8)})
    assert host_cores(root, allowed=range(8)) == [(0, 4), (1, 5), (2, 6), (3, 7)]
    # A cpuset (systemd's CPUAffinity=, taskset) leaves some threads out: they are not ours to pin.
    assert host_cores(root, allowed=[0, 1, 4]) == [(0, 4), (1,)]
    # No topology to read (a container hiding sysfs): each CPU counts as a core.
    assert host_cores(str(tmp_path / "absent"), allowed=[0, 1]) == [(0,), (1,)]


def test_configured_threads_and_small_hosts_keep_onnx_runtimes_own_layout() -> None:
    configured = engine_cores(4, SINGLE, "1.30.0")
    assert (configured.threads, configured.pool_affinity, configured.pinned) == (4, "", False)
    assert "as configured" in configured.reason
    # ONNX Runtime's default layout, but counted and pinned within the CPUs edged was given:
    # a thread per core, the pool from the second core on, the calling thread free.
    small = engine_cores(0, SINGLE[:4], "1.30.0")
    assert (small.threads, small.pool_affinity, small.pinned, small.keeps_core) == (4, "2;3;4", False, False)
    assert small.reason == "4 threads, one per core edged may use, pool pinned to CPUs 1,2,3"
    # A mask of CPUs 5 and 9 of some larger machine (taskset, CPUAffinity=): its own two.
    masked = engine_cores(0, [(5,), (9,)], "1.30.0")
    assert (masked.threads, masked.pool_affinity) == (2, "10")
    assert engine_cores(0, PAIRS[:2], "1.30.0").pool_affinity == "2,10"  # both threads of the second core
    one = engine_cores(0, SINGLE[:1], "1.30.0")
    assert (one.threads, one.pool_affinity, one.reason) == (1, "", "1 thread, one per core edged may use")


def test_where_threads_may_not_be_pinned_every_layout_keeps_its_count_unpinned() -> None:
    small = engine_cores(0, SINGLE[:4], "1.30.0", pinning=False)
    assert (small.threads, small.pool_affinity, small.pinned) == (4, "", False)
    assert small.reason.endswith("not pinned (this process may not set its threads' CPUs)")
    many = engine_cores(0, SINGLE, "1.30.0", pinning=False)
    assert (many.threads, many.pool_affinity, many.pinned, many.kept_cpus, many.keeps_core) == (
        15,
        "",
        False,
        frozenset(),
        True,
    )
    assert "a core's worth left to edged's own threads" in many.reason
    assert engine_cores(0, SINGLE[:4], "1.13.1").pool_affinity == ""  # before 1.14 nothing can be pinned


def test_a_many_core_host_leaves_the_first_core_to_edged() -> None:
    layout = engine_cores(0, SINGLE, "1.30.0")
    assert layout.threads == 15 and len(layout.pool_affinity.split(";")) == layout.threads - 1
    # One pool thread per core from the third on, numbered from 1 as ONNX Runtime reads them.
    assert layout.pool_affinity == ";".join(str(cpu + 1) for cpu in range(2, 16))
    assert (layout.caller_cpus, layout.kept_cpus) == (frozenset({1}), frozenset({0}))
    assert layout.session_entries() == {"session.intra_op_thread_affinities": layout.pool_affinity}
    assert "CPU 0 left to edged" in layout.reason


def test_hardware_thread_pairs_are_pinned_together() -> None:
    layout = engine_cores(0, PAIRS, "1.30.0")
    assert layout.threads == 7 and len(layout.pool_affinity.split(";")) == layout.threads - 1
    assert layout.pool_affinity.split(";")[0] == "3,11"  # CPUs 2 and 10, one core
    assert (layout.caller_cpus, layout.kept_cpus) == (frozenset({1, 9}), frozenset({0, 8}))


def test_before_1_14_the_threads_are_fewer_but_not_pinned() -> None:
    layout = engine_cores(0, SINGLE, "1.13.1")
    assert (layout.threads, layout.pool_affinity, layout.pinned, layout.keeps_core) == (15, "", False, True)
    assert "cannot pin" in layout.reason


def test_a_cpu_quota_sets_the_thread_count_and_pins_nothing() -> None:
    # systemd's CPUQuota=200% or a container's --cpus=2 on 16 cores: two threads' worth of
    # time on any core; a pool of 15 would spend it in bursts and wait out the rest of
    # each period throttled.
    two = engine_cores(0, SINGLE, "1.30.0", quota=2.0)
    assert (two.threads, two.pool_affinity, two.pinned, two.keeps_core) == (2, "", False, False)
    assert two.reason == "2 threads, one per core edged may use, not pinned (a CPU quota of 2 CPUs)"
    assert engine_cores(0, SINGLE, "1.30.0", quota=1.5).threads == 2  # a part CPU is a thread's share
    assert engine_cores(0, SINGLE, "1.30.0", quota=0.5).threads == 1
    assert engine_cores(0, SINGLE, "1.30.0", quota=32.0) == engine_cores(0, SINGLE, "1.30.0")  # above the cores
    assert engine_cores(0, SINGLE, "1.30.0", instances=2, quota=4.0).threads == 2
    twelve = engine_cores(0, SINGLE, "1.30.0", quota=12.0)
    assert (twelve.threads, twelve.pinned, twelve.keeps_core) == (11, False, True)
    assert engine_cores(3, SINGLE, "1.30.0", quota=1.0).threads == 3  # threads set by hand hold


def _quota_group(quota_us: int, period_us: int) -> Path:
    """A real control group with that CPU quota (v1 cpu hierarchy, else v2), or a skip."""
    v1 = Path("/sys/fs/cgroup/cpu")
    v2 = (
        Path("/sys/fs/cgroup/unified")
        if Path("/sys/fs/cgroup/unified/cgroup.controllers").exists()
        else Path("/sys/fs/cgroup")
    )
    group = (v1 if (v1 / "cpu.cfs_period_us").exists() else v2) / f"edged-test-{os.getpid()}"
    try:
        group.mkdir()
        if (group / "cpu.cfs_quota_us").exists():
            (group / "cpu.cfs_period_us").write_text(str(period_us))
            (group / "cpu.cfs_quota_us").write_text(str(quota_us))
        else:
            (group / "cpu.max").write_text(f"{quota_us} {period_us}")
    except OSError as exc:
        if group.exists():
            group.rmdir()
        pytest.skip(f"cannot make a control group with a CPU quota here: {exc}")
    return group


def test_a_process_in_a_quota_group_gets_threads_for_its_quota(demo_assets: Path) -> None:
    """A real control group (cgroup v1 or v2, as this kernel mounts it) limiting a child
    process to 1.5 CPUs' time: the child reads the quota and lays out two threads, unpinned."""
    group = _quota_group(150000, 100000)
    try:
        code = (
            "import json, os, sys\n"
            "open(sys.argv[1] + '/cgroup.procs', 'w').write(str(os.getpid()))\n"
            "from edged.backends.onnxruntime.backend import OnnxRuntimeBackend\n"
            "from edged.cpu_limits import cpu_quota\n"
            "cores = [(cpu,) for cpu in range(16)]\n"
            "layout = OnnxRuntimeBackend(cores=lambda: cores).engine_cores(0)\n"
            "print(json.dumps([cpu_quota(), layout.threads, layout.reason]))\n"
        )
        repo = Path(__file__).resolve().parents[2]
        done = subprocess.run(
            [sys.executable, "-c", code, str(group)], cwd=repo, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [
            1.5,
            2,
            "2 threads, one per core edged may use, not pinned (a CPU quota of 1.5 CPUs)",
        ]
    finally:
        group.rmdir()


def test_instances_with_threads_0_share_the_cores_out_unpinned() -> None:
    two = engine_cores(0, SINGLE[:2], "1.30.0", instances=2)
    assert (two.threads, two.pool_affinity, two.pinned, two.kept_cpus) == (1, "", False, frozenset())
    assert "1 thread for each of 2 engines on 2 cores" in two.reason
    assert not two.keeps_core  # 2 cores: a core given away is half the engines'
    many = engine_cores(0, SINGLE, "1.30.0", instances=2)
    # 8 cores or more: the engines share all cores but one, unpinned; edged's threads get the rest.
    assert (many.threads, many.pinned, many.kept_cpus, many.keeps_core) == (7, False, frozenset(), True)
    assert (
        many.reason
        == "7 threads for each of 2 engines on 16 cores, not pinned; a core's worth left to edged's own threads"
    )
    assert engine_cores(0, SINGLE, "1.30.0", instances=3).threads == 5
    # More engines than cores: one thread each, never none (0 would be ONNX Runtime's default: every core).
    assert engine_cores(0, SINGLE[:2], "1.30.0", instances=4).threads == 1
    # Threads set by hand hold for every engine.
    assert engine_cores(3, SINGLE, "1.30.0", instances=2).threads == 3


def test_edged_chooses_two_engines_on_many_cores_with_threads_0(
    demo_assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture_host(monkeypatch, SINGLE)

    def chosen(**extra: Any) -> Tuple[int, str]:
        doc = {"name": "m", "path": str(demo_assets / "demo-cnn.onnx"), "batch": 1, **extra}
        return instances_for(parse_config({"device": {"id": "t"}, "models": [doc]}).models[0])

    assert chosen() == (2, "two engines on 16 cores")
    assert chosen(batch=8)[0] == 2
    assert chosen(threads=4)[0] == 1
    assert chosen(device="gpu")[0] == 1
    assert chosen(instances=1) == (1, "as configured")
    assert chosen(instances=3, batch=8) == (3, "as configured")
    fixture_host(monkeypatch, SINGLE[:4])
    assert chosen() == (1, "one engine on 4 cores (fewer than 8)")


def test_one_calling_thread_holds_the_core_at_a_time() -> None:
    core = CallerCore()
    first, second = object(), object()
    assert core.claim(first) and core.claim(first)
    assert not core.claim(second)
    core.release(second)  # not the holder: nothing changes
    assert not core.free
    core.release(first)
    assert core.free and core.claim(second)


def _thread_cpus() -> Dict[int, List[int]]:
    """Each thread of this process and the CPUs it may run on (/proc/self/task/*/status)."""
    found = {}
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/status") as handle:
            for line in handle:
                if line.startswith("Cpus_allowed_list:"):
                    found[int(task)] = parse_cpu_list(line.split(":", 1)[1])
    return found


needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs to tell apart")


@needs_two_cpus
def test_onnx_runtime_takes_the_whole_layout_and_pins_each_pool_thread_where_it_says(demo_assets: Path) -> None:
    """Checked against ONNX Runtime itself: it refuses a session whose affinity string does
    not name exactly intra_op_num_threads - 1 groups (onnxruntime/core/util/thread_utils.cc,
    CreateThreadPoolHelper: "actual_num_affinities == thread_pool_size - 1"), and it numbers
    CPUs from 1. A nine-'core' topology made of this machine's two CPUs gives a layout whose
    pool threads must land on CPU 1, CPU 0, CPU 0, CPU 1, ... as the string says."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    topology = [(cpus[0],), (cpus[0],), (cpus[1],)] * 3
    layout = engine_cores(0, topology, ort.__version__)
    groups = layout.pool_affinity.split(";")
    assert layout.threads == 8 and len(groups) == layout.threads - 1
    assert groups[0] == str(cpus[1] + 1)
    before = set(_thread_cpus())
    so = ort.SessionOptions()
    so.intra_op_num_threads = layout.threads
    for key, value in layout.session_entries().items():
        so.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(demo_assets / "demo-cnn.onnx"), so, providers=["CPUExecutionProvider"])
    # Each pool thread pins itself when it first runs (ThreadMain in ONNX Runtime's env.cc),
    # so the snapshot waits for them; a thread another test left may start meanwhile, unpinned.
    wanted = sorted([list(core) for core in topology[2:]])
    deadline = time.monotonic() + 10.0
    while True:
        pool = sorted(allowed for tid, allowed in _thread_cpus().items() if tid not in before and len(allowed) == 1)
        if pool == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert pool == wanted
    # A string one group short is refused, which is why every layout keeps the count.
    short = ort.SessionOptions()
    short.intra_op_num_threads = layout.threads
    short.add_session_config_entry("session.intra_op_thread_affinities", ";".join(groups[1:]))
    with pytest.raises(Exception, match=r"(?i)affinit"):
        ort.InferenceSession(str(demo_assets / "demo-cnn.onnx"), short, providers=["CPUExecutionProvider"])
    del session


# A child process loads one engine the way the daemon does (threads: 0) after narrowing
# itself: to some of its CPUs (as taskset or systemd's CPUAffinity= would), or behind a
# seccomp filter refusing sched_setaffinity with EPERM, as the unit's SystemCallFilter=
# ~@resources would (libseccomp through ctypes: libseccomp2 comes with systemd).
_NARROWED_ENGINE = """
import ctypes, json, os, sys, time
cpus, refuse = json.loads(sys.argv[2]), sys.argv[3] == "refuse"
if cpus:
    os.sched_setaffinity(0, cpus)
if refuse:
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_init.restype = ctypes.c_void_p
    ctx = ctypes.c_void_p(lib.seccomp_init(ctypes.c_uint32(0x7FFF0000)))  # SCMP_ACT_ALLOW
    number = lib.seccomp_syscall_resolve_name(b"sched_setaffinity")
    assert lib.seccomp_rule_add(ctx, ctypes.c_uint32(0x00050000 | 1), number, 0) == 0  # SCMP_ACT_ERRNO(EPERM)
    assert lib.seccomp_load(ctx) == 0
import numpy as np
from edged.backends import BuildOptions
from edged.backends.onnxruntime.backend import OnnxRuntimeBackend
before = set(os.listdir("/proc/self/task"))
runner = OnnxRuntimeBackend().load_model(sys.argv[1], BuildOptions())
spec = runner.inputs[0]
runner.infer({spec.name: np.zeros([1] + [d or 1 for d in spec.shape[1:]], dtype=spec.dtype)})
def masks():
    found = []
    for task in sorted(set(os.listdir("/proc/self/task")) - before):
        with open("/proc/self/task/%s/status" % task) as handle:
            found += [line.split(":", 1)[1].strip() for line in handle if line.startswith("Cpus_allowed_list")]
    return found
# Each pool thread pins itself when it first runs (ThreadMain in ONNX Runtime's env.cc).
deadline = time.monotonic() + 10
wanted = runner.cores.pool_affinity.count(";") + 1 if runner.cores.pool_affinity else 0
while sum("," not in m and "-" not in m for m in masks()) < wanted and time.monotonic() < deadline:
    time.sleep(0.02)
print(json.dumps({"reason": runner.cores.reason, "threads": runner.cores.threads, "masks": masks()}))
"""


def _narrowed_engine(model: Path, cpus: List[int], refuse: bool = False) -> Tuple[Dict[str, Any], str]:
    repo = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-c", _NARROWED_ENGINE, str(model), json.dumps(cpus), "refuse" if refuse else "-"]
    done = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@needs_two_cpus
def test_an_engine_stays_on_the_cpus_edged_was_given(demo_assets: Path) -> None:
    """Left to choose, ONNX Runtime sizes its pool by the whole machine and pins a pool
    thread to each other core, outside the process's CPUs (seen with 1.32 here: under
    CPU 0 alone its pool thread was pinned to CPU 1)."""
    first = sorted(os.sched_getaffinity(0))[0]
    layout, _ = _narrowed_engine(demo_assets / "demo-cnn.onnx", [first])
    assert layout["threads"] == 1
    assert all(parse_cpu_list(mask) == [first] for mask in layout["masks"])
    both = sorted(os.sched_getaffinity(0))[:2]
    layout, _ = _narrowed_engine(demo_assets / "demo-cnn.onnx", both)
    assert layout["threads"] == 2
    masks = [parse_cpu_list(mask) for mask in layout["masks"]]
    assert [both[1]] in masks and all(set(mask) <= set(both) for mask in masks)
    assert layout["reason"] == f"2 threads, one per core edged may use, pool pinned to CPUs {both[1]}"


@needs_two_cpus
def test_where_pinning_is_refused_the_engine_runs_unpinned_without_errors(demo_assets: Path) -> None:
    try:
        import ctypes

        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        pytest.skip("libseccomp.so.2 is not installed: no seccomp filter to load")
    both = sorted(os.sched_getaffinity(0))[:2]
    layout, stderr = _narrowed_engine(demo_assets / "demo-cnn.onnx", both, refuse=True)
    assert layout["threads"] == 2
    assert all(parse_cpu_list(mask) == both for mask in layout["masks"])
    assert layout["reason"].endswith("not pinned (this process may not set its threads' CPUs)")
    # ONNX Runtime left to pin would log "pthread_setaffinity_np failed" for each pool thread.
    assert "setaffinity" not in stderr


def _runner_on_thread(runner: Any, feeds: Dict[str, np.ndarray], calls: int) -> List[List[int]]:
    """Attach ``runner`` to a new thread and call it ``calls`` times; the thread's CPUs after each call."""
    seen: List[List[int]] = []

    def work() -> None:
        runner.attach_thread()
        for _ in range(calls):
            runner.infer(feeds)
            seen.append(sorted(os.sched_getaffinity(0)))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return seen


@needs_two_cpus
def test_the_infer_thread_takes_the_caller_core_and_a_second_engine_waits_for_it(
    demo_assets: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from edged.backends.onnxruntime.backend import OnnxRuntimeBackend

    caplog.set_level("INFO", logger="edged.backends.onnxruntime.backend")
    cpus = sorted(os.sched_getaffinity(0))[:2]
    everywhere = sorted(os.sched_getaffinity(0))
    monkeypatch.setattr(cores_module, "KEEP_CORE_FROM", 2)  # this machine's two CPUs as a 'many-core' host
    monkeypatch.setattr("edged.backends.onnxruntime.backend.cpu_quota", lambda: None)
    backend = OnnxRuntimeBackend(cores=lambda: [(cpus[0],), (cpus[1],)])
    plan = backend.build_plan(str(demo_assets / "demo-cnn.onnx"), BuildOptions()).plan
    first, second = backend.load_plan(plan, BuildOptions()), backend.load_plan(plan, BuildOptions())
    assert first.cores.threads == 1 and first.cores.caller_cpus == frozenset({cpus[1]})
    spec = first.inputs[0]
    feeds = {spec.name: np.zeros([1, *[d or 1 for d in spec.shape[1:]]], dtype=spec.dtype)}
    assert _runner_on_thread(first, feeds, 2) == [[cpus[1]], [cpus[1]]]
    attached, closed = threading.Event(), threading.Event()
    seen: List[Tuple[str, List[int]]] = []

    def reloaded() -> None:  # a model reloaded by a push: its engine starts beside the old one
        second.attach_thread()
        seen.append(("attached", sorted(os.sched_getaffinity(0))))
        attached.set()
        closed.wait(10)
        second.infer(feeds)
        seen.append(("called", sorted(os.sched_getaffinity(0))))

    thread = threading.Thread(target=reloaded)
    thread.start()
    attached.wait(10)
    first.close()  # the old engine ends
    closed.set()
    thread.join()
    # The core was held: the second engine's thread ran wherever the scheduler put it, then
    # took the core at its first call after the holder closed.
    assert seen == [("attached", everywhere), ("called", [cpus[1]])]
    # The operator sees both steps in the log, with the CPUs.
    messages = [record.getMessage() for record in caplog.records if "calling thread" in record.getMessage()]
    assert messages == [
        f"onnxruntime engine: its calling thread runs unpinned while another engine's holds CPUs {cpus[1]}",
        f"onnxruntime engine: its calling thread took CPUs {cpus[1]} over",
    ]
    second.close()
    # The main thread was never pinned: only the threads that attached.
    assert sorted(os.sched_getaffinity(0)) == everywhere


def test_a_many_core_host_preprocesses_onnx_runtime_models_on_the_kept_core(
    demo_assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture_host(monkeypatch, SINGLE)

    def model(**extra: Any) -> Any:
        doc = {"name": "m", "path": str(demo_assets / "demo-cnn.onnx"), "batch": 8, **extra}
        return parse_config({"device": {"id": "t"}, "models": [doc]}).models[0]

    auto = folding_for(model())  # two engines, a core's worth left over
    assert auto.prefix is None
    assert "the core the engine leaves free" in auto.reason and "a core's worth left to edged" in auto.reason
    one = folding_for(model(instances=1))  # one engine, pinned, the first core left over
    assert one.prefix is None and "CPU 0 left to edged" in one.reason
    # Batch 1: one frame's prefix is a sliver of the call and adds no host time to latency.
    assert folding_for(model(batch=1)).prefix is not None
    # Threads set by hand: the engine gets what was asked and the plan keeps the prefix.
    assert folding_for(model(threads=4)).prefix is not None
    # Two engines set by hand leave a core's worth on 16 cores too; on 4 they share all cores.
    assert folding_for(model(instances=2)).prefix is None
    fixture_host(monkeypatch, SINGLE[:4])
    assert folding_for(model(instances=2)).prefix is not None
    fixture_host(monkeypatch, SINGLE[:2])
    assert folding_for(model()).prefix is not None
