"""End to end: the .deb installed with apt into a Debian 12 tree booted under real systemd.

The tests run in file order against one booted tree (each is one sub-check of the
package's life: install, start, telemetry, reload, watchdog, stop, purge). The tree is
the cached debootstrap tree of tests/packaging/make-rootfs, which also installs ONNX
Runtime with pip (the test's own step: Debian 12 has no onnxruntime package). The MQTT
broker runs on the host's loopback, which the tree shares (no network namespace).

Test-only speed-ups, in a drop-in the test writes: WatchdogSec=4 and RestartSec=1 (the
shipped unit has 30 s and 5 s). The camera that is down at boot is an RTSP source whose
server (tests/media/rtsp_server.py, on the shared loopback) starts two minutes later.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest
import yaml

from tests.mqtt.broker import Mosquitto, free_port
from tests.mqtt.observer import Observer
from tests.packaging.booted import REPO, ROOTFS_CACHE, BootedTree

pytestmark = [pytest.mark.slow]

CONFIG = "/etc/edged/edged.yaml"
DEMO = "/opt/edged-demo"
DROP_IN = """[Service]
# Test speed-ups: a quick watchdog verdict and restart.
WatchdogSec=4
RestartSec=1
"""


def _skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, mounts, chroot)")
    for tool in ("unshare", "nsenter", "debootstrap", "chroot"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            pytest.skip(f"needs {tool} (tools/install-deps test installs it)")


def _wait(predicate: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout}s\n{detail()}")


def _config(port: int, camera_port: int = 0) -> str:
    source: Dict[str, Any] = {"type": "synthetic", "fps": 20, "size": [64, 64]}
    doc: Dict[str, Any] = {
        "device": {"id": "e2e-node"},
        "plans": {"cache_dir": "/var/cache/edged/plans"},
        "telemetry": {"period_s": 1},
        "mqtt": {"host": "127.0.0.1", "port": port},
        "models": [
            {
                "name": "demo",
                "path": f"{DEMO}/demo-cnn.onnx",
                "backend": "onnxruntime",
                "device": "cpu",
                "threads": 0,  # edged's default: it lays ONNX Runtime's threads out
                "source": source,
                "postprocess": {"type": "classify", "top_k": 1, "labels": f"{DEMO}/labels.txt"},
                "sink": {"type": "jsonl", "path": "/var/lib/edged/demo.jsonl"},
            }
        ],
    }
    if camera_port:
        camera = dict(doc["models"][0], name="cam", sink={"type": "null"})
        camera["source"] = {"type": "rtsp", "url": f"rtsp://127.0.0.1:{camera_port}/cam", "retry_max_s": 10}
        camera["preprocess"] = {"size": [64, 64]}
        doc["models"].append(camera)
    return yaml.safe_dump(doc)


class Env:
    def __init__(self, tree: BootedTree, broker: Mosquitto, observer: Observer, deb: Path) -> None:
        self.tree, self.broker, self.observer, self.deb = tree, broker, observer, deb
        self.timings: Dict[str, float] = {}

    def journal(self) -> str:
        return self.tree.journal("edged")

    def results(self) -> int:
        proc = self.tree.run("sh", "-c", "wc -l < /var/lib/edged/demo.jsonl", check=False)
        return int(proc.stdout.strip() or 0)


@pytest.fixture(scope="module")
def env(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    _skip_unless_possible()
    started = time.monotonic()
    subprocess.run([str(REPO / "tests" / "packaging" / "make-rootfs"), str(ROOTFS_CACHE)], check=True)
    rootfs_s = time.monotonic() - started
    broker = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    observer = Observer(broker.port)
    tree = BootedTree()
    try:
        tree.boot()
        environment = Env(tree, broker, observer, deb)
        environment.timings["rootfs_s"] = rootfs_s
        environment.timings["boot_s"] = time.monotonic() - started - rootfs_s
        yield environment
        environment.timings["total_s"] = time.monotonic() - started
        sys.stderr.write(f"\nend-to-end timings: {environment.timings}\n")
    finally:
        tree.shutdown()
        observer.close()
        broker.stop()
    assert not tree.cgroup.exists(), f"{tree.cgroup} left behind"
    assert not tree.work.exists()
    assert str(tree.work) not in Path("/proc/self/mountinfo").read_text()


def test_apt_install_creates_user_and_enables_service(env: Env) -> None:
    tree = env.tree
    shutil.copy(env.deb, tree.root / "tmp" / env.deb.name)
    started = time.monotonic()
    tree.run("apt-get", "install", "-y", f"/tmp/{env.deb.name}", timeout=300)
    env.timings["apt_install_s"] = time.monotonic() - started
    assert tree.run("getent", "passwd", "edged").stdout.split(":")[5] == "/var/lib/edged"
    groups = tree.run("id", "-nG", "edged").stdout.split()
    assert "edged" in groups and "video" in groups
    if tree.run("getent", "group", "render", check=False).returncode == 0:
        assert "render" in groups
    assert tree.run("systemctl", "is-enabled", "edged").stdout.strip() == "enabled"
    assert tree.run("dpkg-query", "-W", "-f=${Conffiles}", "edged").stdout.strip().startswith(CONFIG)
    # Installing twice (postinst again) keeps the same user.
    uid = tree.run("id", "-u", "edged").stdout
    tree.run("dpkg-reconfigure", "edged")
    assert tree.run("id", "-u", "edged").stdout == uid
    # The package started it with the shipped base config (no models): ready and idle.
    _wait(lambda: tree.show("edged", "ActiveState") == "active", 30, "edged active after install", env.journal)


def test_start_serves_the_demo_model(env: Env) -> None:
    tree = env.tree
    tree.run("systemctl", "stop", "edged")
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_demo_model.py"), "--out", f"{tree.root}{DEMO}"],
        check=True,
        capture_output=True,
    )
    tree.run("chmod", "-R", "a+rX", DEMO)
    tree.write(CONFIG, _config(env.broker.port))
    tree.write("/etc/systemd/system/edged.service.d/e2e.conf", DROP_IN)
    tree.run("systemctl", "daemon-reload")
    started = time.monotonic()
    tree.run("systemctl", "start", "edged")  # Type=notify: returns once READY=1 arrived
    env.timings["start_to_ready_s"] = time.monotonic() - started
    assert tree.show("edged", "ActiveState") == "active" and tree.show("edged", "SubState") == "running"
    main_pid = tree.show("edged", "MainPID")
    assert tree.run("stat", "-c", "%U", f"/proc/{main_pid}").stdout.strip() == "edged"
    _wait(lambda: env.results() >= 20, 60, "20 inference results", env.journal)
    _wait(lambda: "1/1 models serving" in tree.show("edged", "StatusText"), 30, "STATUS= shows serving", env.journal)
    assert "model demo: serving" in env.journal()
    # Structured journald fields from JournalHandler (python3-systemd is in the tree).
    by_model = tree.run("journalctl", "--no-pager", "-o", "cat", "MODEL=demo", "DEVICE=cpu").stdout
    assert "model demo: serving" in by_model
    # ONNX Runtime's threads were laid out as edged chose, pins included: the unit allows
    # sched_setaffinity back, and no library was left to pin for itself and fail.
    journal = env.journal()
    assert "onnxruntime engine: " in journal and "may not set its threads' CPUs" not in journal
    assert "pthread_setaffinity_np" not in journal and "cannot pin" not in journal
    # The installed unit, as loaded by the running systemd, keeps its hardening score.
    review = tree.run("systemd-analyze", "security", "--no-pager", "edged", check=False).stdout
    score = re.search(r"Overall exposure level for edged\.service: (\d+\.\d+)", review)
    assert score and float(score.group(1)) <= 1.9, review[-2000:]
    # The plan went to the CacheDirectory, writable under ProtectSystem=strict.
    assert tree.run("sh", "-c", "ls /var/cache/edged/plans/demo.*.plan").returncode == 0


def test_telemetry_reaches_the_host_broker(env: Env) -> None:
    hit = env.observer.wait_for(lambda topic, doc: "e2e-node" in topic, timeout=30)
    assert hit is not None, env.broker.log()[-3000:]


def test_reload_is_logged_and_service_stays_active(env: Env) -> None:
    tree = env.tree
    main_pid = tree.show("edged", "MainPID")
    tree.run("systemctl", "reload", "edged")
    _wait(lambda: "reloading /etc/edged/edged.yaml" in env.journal(), 20, "reload logged", env.journal)
    assert tree.show("edged", "ActiveState") == "active"
    assert tree.show("edged", "MainPID") == main_pid
    before = env.results()
    _wait(lambda: env.results() > before, 20, "still serving after the reload", env.journal)


def test_a_camera_down_at_boot_for_two_minutes_costs_no_restart(env: Env) -> None:
    """Before, a source without frames withheld the watchdog pings: with the shipped unit a
    camera offline at boot restarted the daemon every ~40 s and left every model down."""
    tree = env.tree
    camera_port = free_port()
    tree.write(CONFIG, _config(env.broker.port, camera_port))
    tree.run("systemctl", "restart", "edged")
    restarts, main_pid = tree.show("edged", "NRestarts"), tree.show("edged", "MainPID")

    def status() -> str:
        return tree.show("edged", "StatusText")

    _wait(lambda: "cam: source reconnecting" in status(), 60, "STATUS= names the camera", env.journal)
    before, deadline = env.results(), time.monotonic() + 120
    while time.monotonic() < deadline:  # two minutes at WatchdogSec=4: thirty intervals
        assert tree.show("edged", "ActiveState") == "active", env.journal()[-3000:]
        time.sleep(5)
    assert tree.show("edged", "NRestarts") == restarts and tree.show("edged", "MainPID") == main_pid
    assert env.results() > before + 1000  # the other model served at its 20 fps throughout
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "media" / "rtsp_server.py"), str(camera_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        _wait(lambda: "cam: source" not in status(), 60, "the camera back in STATUS=", env.journal)
        assert "2/2 models serving" in status()
    finally:
        server.kill()
        server.wait()
    assert tree.show("edged", "MainPID") == main_pid
    tree.write(CONFIG, _config(env.broker.port))
    tree.run("systemctl", "restart", "edged")
    assert tree.show("edged", "ActiveState") == "active"


def test_stop_is_a_clean_exit(env: Env) -> None:
    tree = env.tree
    started = time.monotonic()
    tree.run("systemctl", "stop", "edged")
    env.timings["stop_s"] = time.monotonic() - started
    assert tree.show("edged", "ActiveState") == "inactive"
    assert tree.show("edged", "Result") == "success"
    assert tree.show("edged", "ExecMainStatus") == "0"
    assert "received SIGTERM, draining" in env.journal()


def test_purge_removes_user_state_and_cache(env: Env) -> None:
    tree = env.tree
    assert tree.run("test", "-d", "/var/lib/edged").returncode == 0
    tree.run("apt-get", "purge", "-y", "edged", timeout=300)
    assert tree.run("getent", "passwd", "edged", check=False).returncode != 0
    assert tree.run("getent", "group", "edged", check=False).returncode != 0
    for path in ("/var/lib/edged", "/var/cache/edged", "/etc/edged", "/usr/bin/edged"):
        assert tree.run("test", "-e", path, check=False).returncode != 0, path
