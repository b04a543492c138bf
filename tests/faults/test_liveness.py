"""Liveness that means liveness (issue: faults stay where they happen).

The watchdog proves the daemon's main loop runs; a stuck model is recovered in-process;
changes (reloads, plan builds) never run on the main loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import yaml

from edged.pipeline.model_pipeline import ModelPipeline
from edged.plans import build_process
from edged.status import status_summary
from tests.faults.conftest import Running, model, wait_until
from tests.notify import NotifyListener

pytestmark = pytest.mark.slow


@pytest.fixture()
def watchdog(listener: NotifyListener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NotifyListener:
    """The daemon under test talks to ``listener`` as to systemd, with WatchdogSec=1."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    return listener


def _largest_gap(times: List[float], start: float, end: float) -> float:
    inside = [start] + [t for t in times if start <= t <= end] + [end]
    return max(b - a for a, b in zip(inside, inside[1:]))


def test_a_stuck_inference_gets_a_fresh_pipeline_and_nothing_else_notices(
    watchdog: NotifyListener,
    config_file: Callable[..., Path],
    running: Callable[..., Running],
    demo_assets: Path,
) -> None:
    onnx = demo_assets / "demo-cnn.onnx"
    path = config_file(model("hang", onnx, stall_timeout_s=1), model("steady", onnx))
    release = threading.Event()
    hung: List[ModelPipeline] = []

    def hang_the_first_engine(pipeline: ModelPipeline) -> None:
        if pipeline.model.name != "hang" or hung:
            return
        hung.append(pipeline)
        runner = pipeline.runners[0]
        real, calls = runner.infer, [0]

        def infer(feed: Dict[str, Any]) -> Any:
            calls[0] += 1
            if calls[0] > 5:
                release.wait()  # an engine call that never returns
            return real(feed)

        runner.infer = infer  # type: ignore[method-assign]

    run = running(path, hang_the_first_engine)
    try:
        before = (time.monotonic(), run.frames_out("steady"))
        wait_until(lambda: run.daemon.models.slots["hang"].restarts == 1, 15)
        fresh = run.daemon.models.slots["hang"].pipeline
        assert fresh is not None and fresh is not hung[0] and hung[0].state == "failed"
        wait_until(lambda: run.frames_out("hang") > 20, 15)
        after = (time.monotonic(), run.frames_out("steady"))
        # The other model kept its 30 fps through the stall and the restart.
        assert (after[1] - before[1]) / (after[0] - before[0]) > 0.9 * 30
        # systemd saw a live daemon all along: at most one interval between pings.
        pings = watchdog.times("WATCHDOG")
        assert _largest_gap(pings, before[0] + 0.5, after[0]) < 1.0, pings
        state = run.daemon.snapshot()
        assert state.models["hang"].restarts == 1
        assert "no progress from its inference workers" in (state.models["hang"].last_restart or "")
        assert "hang: restarted 1x after a stall" in status_summary(state)
        stalled = hung[0].stats.counters()
        assert stalled["frames_in"] == stalled["frames_out"] + sum(stalled["dropped"].values())
    finally:
        release.set()


def test_a_reload_that_builds_a_plan_never_blocks_the_main_loop(
    watchdog: NotifyListener,
    config_file: Callable[..., Path],
    running: Callable[..., Running],
    demo_assets: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    onnx = demo_assets / "demo-cnn.onnx"
    path = config_file(model("base", onnx))
    run = running(path)
    build = build_process.build_in_child

    def slow_build(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3.0)  # a TensorRT build on a Jetson takes minutes
        return build(*args, **kwargs)

    monkeypatch.setattr(build_process, "build_in_child", slow_build)
    doc = yaml.safe_load(path.read_text())
    doc["models"].append(model("added", onnx))
    path.write_text(yaml.safe_dump(doc))
    asked = time.monotonic()
    run.daemon._reload_requested.set()  # what SIGHUP does
    reloading = watchdog.wait_for("RELOADING", after=asked)
    ready = watchdog.wait_for("READY", after=reloading, timeout=30)
    assert ready - reloading > 2.5  # the build ran meanwhile
    assert _largest_gap(watchdog.times("WATCHDOG"), reloading, ready) < 1.0
    assert "added" in run.daemon.models.slots and run.daemon.models.slots["added"].pipeline is not None
