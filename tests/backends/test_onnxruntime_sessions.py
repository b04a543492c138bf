"""edged's ONNX Runtime sessions leave the CPU alone between runs and keep no copy of the plan
(real ONNX Runtime)."""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import pytest

from edged.backends.base import BuildOptions
from edged.backends.onnxruntime.backend import OnnxRuntimeBackend


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("spin_wait", [False, True])
def test_pool_threads_spin_between_runs_only_when_asked(demo_model: str, spin_wait: bool) -> None:
    """By default ONNX Runtime's pool threads busy-wait after each run: measured here, a whole
    core for as long as the next frame takes to come. A camera at 30 fps would keep a core
    spinning, starving the pipeline's own threads and the device's other work."""
    backend = OnnxRuntimeBackend()
    options = BuildOptions(threads=2, spin_wait=spin_wait)
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
    # A spinning pool thread makes this about 1.0 (one core); sleeping threads about 0.
    busy = idle_cpu / idle_wall
    assert (busy > 0.5) if spin_wait else (busy < 0.2), f"{busy:.2f} cores busy while idle"


def test_spin_wait_is_a_model_setting_outside_the_plan_key(demo_model: str) -> None:
    from edged.config import parse_config
    from edged.errors import ConfigError
    from edged.model_loading import build_options

    doc = {"device": {"id": "t"}, "models": [{"name": "m", "path": demo_model, "spin_wait": True}]}
    model = parse_config(doc).models[0]
    assert model.spin_wait and build_options(model).spin_wait
    plain = parse_config({"device": {"id": "t"}, "models": [{"name": "m", "path": demo_model}]}).models[0]
    assert not plain.spin_wait
    assert build_options(model).as_key_document() == build_options(plain).as_key_document()
    doc["models"][0]["spin_wait"] = "yes"
    with pytest.raises(ConfigError, match=r"models\[0\]\.spin_wait: 'yes' is not of type boolean"):
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
