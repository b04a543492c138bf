"""A plan cache that cannot be used degrades to plans kept for this run, never to models
that do not serve."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from edged.config import load_config
from edged.daemon import Daemon
from edged.status import status_lines, status_summary
from tests.faults.conftest import model, wait_until


@contextlib.contextmanager
def _tiny_tmpfs(where: Path, size_kib: int) -> Iterator[Path]:
    """A real file system of ``size_kib`` KiB (root only): the disk that fills up."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)], check=False)
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root and a mount namespace that allows it")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(path: Path) -> None:
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: the disk is full
        pass
    finally:
        os.close(fd)


def _serve(path: Path) -> Daemon:
    daemon = Daemon(load_config(path), config_path=str(path))
    daemon.models.start()
    assert daemon.models.wait_started(60)
    return daemon


def test_an_unusable_cache_dir_at_first_start_still_serves_every_model(
    config_file: Callable[..., Path], demo_assets: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache's parent should be")
    onnx = demo_assets / "demo-cnn.onnx"
    path = config_file(model("a", onnx), model("b", onnx), plans={"cache_dir": str(blocker / "plans")})
    daemon = _serve(path)
    try:
        assert all(slot.error is None and slot.pipeline is not None for slot in daemon.models.slots.values())
        state = daemon.snapshot()
        assert state.plan_cache_problem is not None and "plans.cache_dir: cannot create" in state.plan_cache_problem
        assert "2/2 models serving" in status_summary(state) and "plan cache unusable" in status_summary(state)
        assert any(line.startswith("plan cache: plans.cache_dir") for line in status_lines(state))
        assert "plan cache unusable" in caplog.text
    finally:
        daemon.models.stop()


def test_a_full_cache_disk_serves_the_built_plan_from_memory(
    config_file: Callable[..., Path], demo_assets: Path, tmp_path: Path
) -> None:
    onnx = demo_assets / "demo-cnn.onnx"
    with _tiny_tmpfs(tmp_path / "small", 256) as disk:
        cache = disk / "plans"
        cache.mkdir()
        (cache / ".locks").mkdir()
        (cache / "quarantine").mkdir()
        _fill(disk / "filler")
        path = config_file(model("a", onnx), plans={"cache_dir": str(cache)})
        daemon = _serve(path)
        try:
            slot = daemon.models.slots["a"]
            assert slot.error is None and slot.pipeline is not None and slot.pipeline.state == "running"
            assert "not cached" in slot.plan.source and "No space left on device" in slot.plan.source
            assert not [p for p in cache.iterdir() if p.suffix == ".plan"]  # no partial plan left behind
        finally:
            daemon.models.stop()


def test_a_full_results_disk_is_shown_while_it_lasts_and_the_results_arrive_after(
    config_file: Callable[..., Path], demo_assets: Path, tmp_path: Path
) -> None:
    import json

    import jsonschema

    from edged.telemetry.snapshot import Snapshotter

    schema = json.loads((Path(__file__).resolve().parents[2] / "edged/telemetry/schema.json").read_text())
    onnx = demo_assets / "demo-cnn.onnx"
    with _tiny_tmpfs(tmp_path / "data", 256) as data:
        results = data / "results.jsonl"
        sink = {"type": "jsonl", "path": str(results), "flush_every": 4}
        daemon = _serve(config_file(model("writer", onnx, fps=50, sink=sink), model("other", onnx, fps=50)))
        try:
            _fill(data / "filler")

            def trouble() -> Any:
                return daemon.snapshot().models["writer"].sink

            held = wait_until(trouble, 20)
            assert "No space left on device" in held["error"] and held["held_bytes"] > 0
            state = daemon.snapshot()
            telemetry = Snapshotter("t", None, None, 30.0).snapshot(state.models)
            jsonschema.validate(telemetry, schema)
            assert telemetry["models"]["writer"]["sink"]["error"].startswith(str(results))
            assert "sink" not in telemetry["models"]["other"]  # the fault stays with its model
            assert "writer: results not written" in status_summary(state)
            assert any("writer: sink: " in line and "bytes of results held" in line for line in status_lines(state))
            (data / "filler").unlink()
            wait_until(lambda: trouble() is None, 20)
        finally:
            daemon.models.stop()
        counters = daemon.models.slots["writer"].pipeline.stats.counters()  # type: ignore[union-attr]
        records = [json.loads(line) for line in results.read_text().splitlines()]
        assert [r["seq"] for r in records] == list(range(counters["frames_out"])) and not counters["dropped"]
