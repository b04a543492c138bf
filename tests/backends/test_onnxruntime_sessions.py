"""edged's ONNX Runtime sessions spin a bounded time at most, leave the CPU alone between
frames and keep no copy of the plan (real ONNX Runtime)."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any, Dict

import numpy as np
import pytest

from edged.backends.base import BuildOptions
from edged.backends.onnxruntime.backend import OnnxRuntimeBackend, spin_entries


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _idle_cores(demo_model: str, spin_wait_us: int) -> float:
    """Cores the session's threads keep busy in the 30 ms after each of 10 runs."""
    backend = OnnxRuntimeBackend()
    options = BuildOptions(threads=2, spin_wait_us=spin_wait_us)
    runner = backend.load_plan(backend.build_plan(demo_model, options).plan, options)
    spec = runner.inputs[0]
    feeds = {spec.name: np.zeros([1, *[d or 1 for d in spec.shape[1:]]], dtype=np.float32)}
    idle_cpu = idle_wall = 0.0
    for _ in range(10):
        runner.infer(feeds)
        cpu0, wall0 = _cpu_s(), time.monotonic()
        time.sleep(0.03)
        idle_cpu += _cpu_s() - cpu0
        idle_wall += time.monotonic() - wall0
    runner.close()
    return idle_cpu / idle_wall


@pytest.mark.parametrize("spin_wait_us", [0, 200])
def test_pool_threads_sleep_while_waiting_for_the_next_frame(demo_model: str, spin_wait_us: int) -> None:
    """ONNX Runtime's own default keeps a whole core spinning after each run for as long as the
    next frame takes to come; a camera at 30 fps would keep it spinning for good."""
    busy = _idle_cores(demo_model, spin_wait_us)
    assert busy < 0.2, f"{busy:.2f} cores busy while idle"


def test_without_edged_s_entries_the_threads_spin_on(demo_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same session with ONNX Runtime's own defaults keeps a core busy through each 30 ms
    pause: edged's entries, not something else, are what let the threads sleep above."""
    import edged.backends.onnxruntime.backend as backend_module

    monkeypatch.setattr(backend_module, "spin_entries", lambda version, us: {})
    busy = _idle_cores(demo_model, 200)
    assert busy > 0.5, f"{busy:.2f} cores busy while idle"


def test_spinning_always_stops_when_a_run_ends() -> None:
    stop = {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}
    assert spin_entries("1.32.0", 200) == {**stop, "session.intra_op.spin_duration_us": "200"}
    # Before the duration key (1.26), within a run the threads spin as ONNX Runtime decides.
    assert spin_entries("1.25.1", 200) == stop
    # Before the stop after a run (1.12), spinning would go on between frames: off.
    assert spin_entries("1.11.1", 200) == {"session.intra_op.allow_spinning": "0"}
    assert spin_entries("1.32.0", 0) == {"session.intra_op.allow_spinning": "0"}


def test_spin_wait_us_is_a_model_setting_outside_the_plan_key(demo_model: str) -> None:
    from edged.config import parse_config
    from edged.errors import ConfigError
    from edged.model_loading import build_options

    doc: Dict[str, Any] = {"device": {"id": "t"}, "models": [{"name": "m", "path": demo_model, "spin_wait_us": 0}]}
    model = parse_config(doc).models[0]
    assert model.spin_wait_us == 0 and build_options(model).spin_wait_us == 0
    plain = parse_config({"device": {"id": "t"}, "models": [{"name": "m", "path": demo_model}]}).models[0]
    assert plain.spin_wait_us == 200
    assert build_options(model).as_key_document() == build_options(plain).as_key_document()
    doc["models"][0]["spin_wait_us"] = -1
    with pytest.raises(ConfigError, match=r"models\[0\]\.spin_wait_us: -1 is less than the minimum of 0"):
        parse_config(doc)


def test_a_loaded_plan_keeps_no_reference_to_its_bytes(demo_model: str) -> None:
    """An InferenceSession made from bytes holds them for its life: a second copy of the weights."""
    backend = OnnxRuntimeBackend()
    options = BuildOptions(threads=1)
    plan = backend.build_plan(demo_model, options).plan
    before = sys.getrefcount(plan)
    runner = backend.load_plan(plan, options)
    assert sys.getrefcount(plan) == before
    spec = runner.inputs[0]
    out = runner.infer({spec.name: np.zeros([1, *[d or 1 for d in spec.shape[1:]]], dtype=np.float32)})
    assert all(np.isfinite(v).all() for v in out.values())
    runner.close()


def test_a_plan_loads_where_memory_files_are_refused(demo_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A system call filter without memfd_create (EPERM) costs the copy, not the model."""
    import os

    def refused(name: str, flags: int = 0) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "memfd_create", refused)
    backend = OnnxRuntimeBackend()
    options = BuildOptions(threads=1)
    runner = backend.load_plan(backend.build_plan(demo_model, options).plan, options)
    spec = runner.inputs[0]
    out = runner.infer({spec.name: np.zeros([1, *[d or 1 for d in spec.shape[1:]]], dtype=np.float32)})
    assert all(np.isfinite(v).all() for v in out.values())
    runner.close()
