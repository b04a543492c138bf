"""sd_notify over a real AF_UNIX datagram socket, and the daemon's use of it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import yaml

from edged.systemd import Notifier, log_fields, setup_logging, watchdog_interval_s
from tests.notify import NotifyListener

REPO = Path(__file__).resolve().parents[1]


def test_notify_to_path_socket(listener: NotifyListener, tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "notify.sock"))
    assert notifier.enabled
    assert notifier.ready("1/1 models serving")
    listener.wait_for("READY")
    assert listener.messages[0][1] == {"READY": "1", "STATUS": "1/1 models serving"}
    assert notifier.reloading()
    listener.wait_for("RELOADING")
    assert int(listener.messages[-1][1]["MONOTONIC_USEC"]) > 0
    notifier.close()


def test_notify_to_abstract_socket() -> None:
    name = "@edged-test-" + uuid.uuid4().hex
    lst = NotifyListener(name)
    try:
        notifier = Notifier(name)
        assert notifier.watchdog() and notifier.stopping()
        lst.wait_for("WATCHDOG")
        lst.wait_for("STOPPING")
    finally:
        lst.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready()
    assert not Notifier("relative/path").enabled


def test_notify_to_vanished_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone.sock")).ready()


def test_watchdog_usec_parsing() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "20000000"}) == 20.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}) == 0.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"}) is None


def test_structured_fields_reach_the_record() -> None:
    records: List[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        assert setup_logging(journal=False) == "stderr"
        root.handlers[0].addFilter(lambda r: records.append(r) or True)  # type: ignore[arg-type,func-returns-value]
        logging.getLogger("edged.test").info("serving", extra=log_fields("cam0", "dla0", "cam0.trt.abc"))
        assert records and records[0].MODEL == "cam0"  # type: ignore[attr-defined]
        assert records[0].DEVICE == "dla0" and records[0].PLAN_KEY == "cam0.trt.abc"  # type: ignore[attr-defined]
        pytest.importorskip("systemd.journal")
        assert setup_logging(journal=True) == "journal"
        assert type(root.handlers[0]).__name__ == "JournalHandler"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _daemon_config(demo_assets: Path, tmp_path: Path, stall_after: int) -> Path:
    doc: Dict[str, Any] = {
        "device": {"id": "notify-node"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "telemetry": {"period_s": 60},
        "models": [
            {
                "name": "cam0",
                "path": str(demo_assets / "demo-cnn.onnx"),
                "threads": 1,
                "source": {"type": "synthetic", "fps": 20, "size": [64, 64], "stall_after": stall_after},
                "postprocess": {"type": "raw"},
                "sink": {"type": "null"},
            }
        ],
    }
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _start(config: Path, sock: Path, watchdog_usec: Optional[int] = None) -> "subprocess.Popen[bytes]":
    env = dict(os.environ, NOTIFY_SOCKET=str(sock), PYTHONPATH=str(REPO))
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return subprocess.Popen([sys.executable, "-m", "edged", "run", "--config", str(config)], env=env)


@pytest.mark.slow
def test_daemon_ready_reload_stopping(listener: NotifyListener, demo_assets: Path, tmp_path: Path) -> None:
    config = _daemon_config(demo_assets, tmp_path, stall_after=0)
    proc = _start(config, tmp_path / "notify.sock", watchdog_usec=1_000_000)
    try:
        ready = listener.wait_for("READY")
        listener.wait_for("STATUS", "1/1 models serving")
        time.sleep(1.5)
        assert len(listener.times("WATCHDOG")) >= 2, listener.messages
        proc.send_signal(signal.SIGHUP)
        reloading = listener.wait_for("RELOADING", after=ready)
        listener.wait_for("READY", after=reloading)
        proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING")
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_stalled_source_keeps_the_watchdog_fed(listener: NotifyListener, demo_assets: Path, tmp_path: Path) -> None:
    """A camera that stops delivering is the source's state, not a hung daemon: systemd must
    not restart every model for it (before, the pings stopped within the interval)."""
    config = _daemon_config(demo_assets, tmp_path, stall_after=10)
    proc = _start(config, tmp_path / "notify.sock", watchdog_usec=1_000_000)
    try:
        listener.wait_for("READY")
        listener.wait_for("WATCHDOG")
        # 10 frames at 20 fps: the source stalls after 0.5 s, then stays silent.
        time.sleep(4)
        pings = listener.times("WATCHDOG")
        assert len(pings) >= 6 and time.monotonic() - pings[-1] < 1.0, pings
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_reload_validates_the_config_file(demo_assets: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edged.config import load_config
    from edged.daemon import Daemon

    path = _daemon_config(demo_assets, tmp_path, stall_after=0)
    daemon = Daemon(load_config(path), config_path=str(path))
    caplog.set_level(logging.INFO)
    daemon._reload_requested.set()
    daemon._handle_reload_request()
    daemon.changes.run("barrier", lambda: None)  # the reload runs in turn on the change queue
    assert f"reloading {path}" in caplog.text and "reload failed" not in caplog.text
    path.write_text("models: [{name: 3}]\n")
    daemon._reload_requested.set()
    daemon._handle_reload_request()
    daemon.changes.run("barrier", lambda: None)
    assert "reload failed, previous config stays in force" in caplog.text
    assert "models[0].name" in caplog.text
    assert daemon.config.models[0].name == "cam0"


def test_synthetic_stall_after_blocks_until_stopped() -> None:
    from edged.config.model import PluginConfig
    from edged.pipeline.sources.synthetic import SyntheticSource

    source = SyntheticSource(PluginConfig("synthetic", {"type": "synthetic", "fps": 0, "stall_after": 3}), (8, 8))
    stop = threading.Event()
    assert [source.read(stop).seq for _ in range(3)] == [0, 1, 2]  # type: ignore[union-attr]
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert source.read(stop) is None
    assert time.monotonic() - started >= 0.25
