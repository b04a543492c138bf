"""A model's ``instances``: several engines of one plan on one device, each with its own
infer thread (edged.model_loading.same_device_instances), served by real ONNX Runtime."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping

import numpy as np
import pytest

from edged.backends import BuildOptions
from edged.backends.onnxruntime.backend import OnnxRuntimeRunner
from edged.config import parse_config
from edged.daemon import Daemon
from edged.errors import ConfigError, PlanError
from edged.model_loading import same_device_instances
from tests.backends.fixture_host import fixture_host


def _serve(doc: Dict[str, Any], tmp_path: Path, instances: int) -> List[Dict[str, Any]]:
    model = doc["models"][0]
    model.update(instances=instances, threads=0, batch=1)
    model["source"]["count"] = 120
    model["sink"]["path"] = str(tmp_path / f"out-{instances}.jsonl")
    daemon = Daemon(parse_config(doc))
    assert daemon.run(duration_s=60) == 0
    pipeline = daemon.models.slots["demo"].pipeline
    assert pipeline is not None and pipeline.error is None
    assert len({id(r) for r in pipeline.runners}) == instances and pipeline.devices == ["cpu"] * instances
    counters = pipeline.stats.counters()
    assert counters["frames_in"] == counters["frames_out"] == 120
    return [json.loads(line) for line in Path(model["sink"]["path"]).read_text().splitlines()]


def test_two_engines_serve_every_frame_once_with_the_results_of_one(
    demo_config: Dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Dict[int, int] = {}
    lock = threading.Lock()
    real = OnnxRuntimeRunner._infer_impl

    def counted(self: OnnxRuntimeRunner, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        with lock:
            calls[id(self)] = calls.get(id(self), 0) + 1
        return real(self, feeds)

    monkeypatch.setattr(OnnxRuntimeRunner, "_infer_impl", counted)
    one = _serve(demo_config, tmp_path, 1)
    calls.clear()
    two = _serve(demo_config, tmp_path, 2)
    # Both engines took frames from the same source; each frame reached the sink once.
    assert len(calls) == 2 and all(n > 0 for n in calls.values()), calls
    assert sorted(r["seq"] for r in two) == list(range(120))
    by_seq = {r["seq"]: r["outputs"]["logits"] for r in one}
    for record in two:
        np.testing.assert_allclose(record["outputs"]["logits"], by_seq[record["seq"]], rtol=1e-5, atol=1e-6)


def test_instances_are_bounded_and_named_by_key_path(demo_config: Dict[str, Any]) -> None:
    assert parse_config(demo_config).models[0].instances == 0  # edged chooses
    for bad in (-1, 17, "2"):
        demo_config["models"][0]["instances"] = bad
        with pytest.raises(ConfigError, match=r"models\[0\]\.instances"):
            parse_config(demo_config)


class _Plans:
    """edged's PlanManager as far as same_device_instances reads it: the stored plan's bytes."""

    def __init__(self, plan: bytes = b"") -> None:
        self.plan = plan

    def plan_bytes(self, key: Any) -> bytes:
        if not self.plan:
            raise PlanError("plan demo.cpu: no longer in /var/cache/edged/plans")
        return self.plan


class _Backend:
    def __init__(self) -> None:
        self.loads = 0

    def load_plan(self, plan: bytes, options: BuildOptions) -> str:
        self.loads += 1
        return f"runner {self.loads}"


def test_a_dla_core_or_a_plan_gone_from_the_cache_serves_from_fewer_engines(
    demo_config: Dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    demo_config["models"][0]["instances"] = 3
    model = parse_config(demo_config).models[0]
    backend = _Backend()
    extras = same_device_instances(_Plans(b"plan"), model, backend, BuildOptions(device="gpu", instances=3), "key")  # type: ignore[arg-type]
    assert [runner for runner, _, _ in extras] == ["runner 1", "runner 2"]
    with caplog.at_level(logging.WARNING):
        dla = same_device_instances(_Plans(b"plan"), model, backend, BuildOptions(device="dla0", instances=3), "key")  # type: ignore[arg-type]
        gone = same_device_instances(_Plans(), model, backend, BuildOptions(device="cpu", instances=3), "key")  # type: ignore[arg-type]
    assert dla == [] and gone == [] and backend.loads == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("dla0 runs one engine at a time" in m for m in messages)
    assert any("1 of 3 engines loaded" in m and "no longer in" in m for m in messages)


def test_on_a_many_core_host_edged_serves_a_cpu_model_from_two_engines_by_default(
    demo_config: Dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A fixture topology of 16 single-thread cores (the lent x86 host's), not this machine's.
    fixture_host(monkeypatch, [(cpu,) for cpu in range(16)])
    model = demo_config["models"][0]
    model.update(threads=0, batch=1)
    model["source"]["count"] = 60
    with caplog.at_level(logging.INFO):
        daemon = Daemon(parse_config(demo_config))
        assert daemon.run(duration_s=60) == 0
    pipeline = daemon.models.slots["demo"].pipeline
    assert pipeline is not None and len(pipeline.runners) == 2
    assert pipeline.stats.counters()["frames_out"] == 60
    messages = [r.getMessage() for r in caplog.records]
    assert "model demo: 2 engines (two engines on 16 cores)" in messages
    shared = "7 threads for each of 2 engines on 16 cores, not pinned; a core's worth left to edged's own threads"
    assert messages.count(f"onnxruntime engine: {shared}") == 2
