"""Fuzzing the push handler: random bytes, random JSON and mutated pushes go through
ControlPlane.process on a fresh daemon each. It must answer every one with a result and
never let a push that failed validation change the config in force."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edged.config import check_document, parse_config
from edged.control.paths import confinement_problem
from edged.control.plane import Message
from edged.control.settings import control_settings
from edged.daemon import Daemon
from tests.control.conftest import serving_model

pytestmark = pytest.mark.slow

CASES = int(os.environ.get("FUZZ_CASES", "10000"))
TOPICS = ["edged/node-1/config/set", "edged/group/lab/config/set"]
STATUSES = {"applied", "rejected", "rolled_back", "duplicate"}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False), st.text(max_size=20)
)
# Two levels of nesting reach every check; deeper recursion only slows generation down
# (nesting limits are tested on their own in test_payload.py).
shallow = st.one_of(scalars, st.lists(scalars, max_size=3))
json_values = st.one_of(shallow, st.dictionaries(st.text(max_size=12), shallow, max_size=4))
# Keys and values that reach deeper checks than random text would.
config_keys = st.sampled_from(
    ["models", "telemetry", "device", "plans", "mqtt", "control", "version", "period_s", "id", "groups", "defaults"]
)


def _paths(dirs: Dict[str, Path]) -> Any:
    models = dirs["models"]
    return st.sampled_from(
        [
            str(models / "demo-cnn.onnx"),
            str(models / "broken.onnx"),
            str(models / "missing.onnx"),
            str(models / "escape.onnx"),
            f"{models}/../models/demo-cnn.onnx",
            str(dirs["outside"] / "demo-cnn.onnx"),
            "demo-cnn.onnx",
            str(models) + "\x00",
            "",
        ]
    )


def _model(dirs: Dict[str, Path]) -> Any:
    return st.builds(
        lambda name, path, batch, extra: dict(serving_model(name, path, fps=2), batch=batch, **extra),
        st.sampled_from(["a", "b", "a", "b", "bad name", ""]),
        _paths(dirs),
        st.integers(-1, 5),
        st.one_of(
            st.just({}),
            st.dictionaries(st.sampled_from(["device", "precision", "queue_size", "bogus"]), json_values, max_size=2),
        ),
    )


def _payloads(dirs: Dict[str, Path]) -> Any:
    patch = st.dictionaries(
        config_keys,
        st.one_of(json_values, st.lists(_model(dirs), max_size=3), st.fixed_dictionaries({"period_s": json_values})),
        max_size=4,
    )
    envelope = st.fixed_dictionaries(
        {"version": st.one_of(st.integers(0, 5), st.integers(-2, 2**63), json_values)},
        optional={
            "patch": st.one_of(patch, json_values),
            "config": st.one_of(patch, json_values),
            "id": json_values,
            "target": st.sampled_from(["node-1", "lab", "other"]),
            "signature": st.text(max_size=90),
            "extra": json_values,
        },
    )
    structured = envelope.map(lambda doc: json.dumps(doc).encode())
    plausible = st.fixed_dictionaries(
        {"version": st.integers(0, 4), "patch": st.fixed_dictionaries({}, optional={
            "models": st.lists(_model(dirs), max_size=2),
            "telemetry": st.fixed_dictionaries({"period_s": st.one_of(st.floats(-1, 10), json_values)}),
            "device": st.fixed_dictionaries({}, optional={
                "id": st.sampled_from(["node-1", "x"]), "defaults": json_values,
            }),
        })},
        optional={"target": st.sampled_from(["node-1", "lab", "other"]), "id": st.text(max_size=8)},
    ).map(lambda doc: json.dumps(doc).encode())  # fmt: skip
    return st.one_of(
        st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()), structured, plausible, plausible
    )


@pytest.fixture()
def fuzz_dirs(control_dirs: Dict[str, Path]) -> Dict[str, Path]:
    os.symlink(control_dirs["outside"] / "demo-cnn.onnx", control_dirs["models"] / "escape.onnx")
    return control_dirs


def test_fuzz_push_handler(
    fuzz_dirs: Dict[str, Path], base_doc: Dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="edged")  # ten thousand rejections need no log
    base_doc["models"] = []
    base = parse_config(base_doc)
    counts: Dict[str, int] = {}

    broken = serving_model("a", str(fuzz_dirs["models"] / "broken.onnx"), fps=2)
    good = serving_model("b", str(fuzz_dirs["models"] / "demo-cnn.onnx"), fps=2)

    @settings(
        max_examples=CASES,
        deadline=20000,  # milliseconds per case: a hang fails the test, a loaded CI machine does not
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @example(raw=json.dumps({"version": 3, "patch": {"models": [good, broken]}}).encode(), topic=TOPICS[0])
    @example(raw=json.dumps({"version": 3, "patch": {"models": [good]}}).encode(), topic=TOPICS[1])
    @example(
        raw=json.dumps({"version": 3, "patch": {"models": [dict(good, path=good["path"] + "\0")]}}).encode(),
        topic=TOPICS[0],
    )
    @given(raw=_payloads(fuzz_dirs), topic=st.sampled_from(TOPICS))
    def check(raw: bytes, topic: str) -> None:
        from edged.control.plane import ControlPlane

        daemon = Daemon(base)
        published = []
        plane = ControlPlane(daemon, lambda t, p, r, c: published.append(t))
        try:
            result = plane.process(Message(topic, raw))
        finally:
            daemon.models.stop(timeout=1.0)
        status = result["status"]
        counts[status] = counts.get(status, 0) + 1
        assert status in STATUSES
        assert "edged/node-1/config/result" in published
        if status != "applied":
            assert daemon.config is base and result["errors"]
            return
        new = daemon.config
        assert new.version > base.version
        assert check_document(dict(new.document)) == []
        dirs = control_settings(new).model_dirs
        for model in new.models:
            assert confinement_problem(model.path, dirs, "control.model_dirs") is None
            assert os.path.isfile(model.path)

    check()
    # The generator must reach past the envelope checks, or the fuzzing proves little.
    assert (
        counts.get("applied", 0) > CASES // 50
        and counts.get("rolled_back", 0) > 0
        and counts.get("rejected", 0) > CASES // 2
    ), counts
