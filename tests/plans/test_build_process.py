"""Plan builds in a child process (edged.plans.build_process): same plan, named errors,
a child's death is one model's failed build, and the daemon keeps none of the build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

from edged.backends import get_backend
from edged.backends.base import BuildOptions
from edged.backends.input_prefix import InputPrefix
from edged.errors import BackendError, ConfigError
from edged.plans import build_process

REPO = Path(__file__).resolve().parents[2]
PREFIX = InputPrefix("rgb", "nchw", 1 / 255, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (64, 64), uint8_first=True)


def _model(name: str, assets: Path, tmp_path: Path, fps: float, count: int, batch: int = 1) -> Dict[str, Any]:
    return {
        "name": name,
        "path": str(assets / "demo-cnn.onnx"),
        "threads": 1,
        "batch": batch,
        "source": {"type": "synthetic", "fps": fps, "count": count, "size": [64, 64]},
        "sink": {"type": "jsonl", "path": str(tmp_path / f"{name}.jsonl")},
    }


def _doc(tmp_path: Path, *models: Dict[str, Any]) -> Dict[str, Any]:
    return {"device": {"id": "b"}, "plans": {"cache_dir": str(tmp_path / "plans")}, "models": list(models)}


def test_the_child_builds_the_plan_the_daemon_would_and_relays_progress(demo_assets: Path) -> None:
    backend = get_backend("onnxruntime")
    options = BuildOptions(threads=1, input_prefix=PREFIX)
    model = str(demo_assets / "demo-cnn.onnx")
    phases: List[Tuple[Optional[float], str]] = []
    built = build_process.build_in_child("onnxruntime", model, options, lambda f, p: phases.append((f, p)))
    here = backend.build_plan(model, options)
    assert phases == [(None, "optimising"), (1.0, "done")]
    assert built.build_log == here.build_log
    frames = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    results = []
    for plan in (built.plan, here.plan):
        runner = backend.load_plan(plan, options)
        results.append(runner.infer({runner.inputs[0].name: frames}))
        runner.close()
    for name, value in results[0].items():
        np.testing.assert_array_equal(value, results[1][name])


def test_a_build_error_keeps_its_type_and_names_the_model(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(BackendError) as info:
        build_process.build_in_child("onnxruntime", str(broken), BuildOptions())
    assert type(info.value) is BackendError and str(broken) in str(info.value)
    with pytest.raises(ConfigError, match="not one of"):
        build_process.build_in_child("no-such-backend", str(broken), BuildOptions())


def test_a_build_process_that_cannot_start_fails_that_build(
    demo_assets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(BackendError, match="cannot start the plan build process") as info:
        build_process.build_in_child("onnxruntime", str(demo_assets / "demo-cnn.onnx"), BuildOptions())
    assert "demo-cnn.onnx" in str(info.value)


def _child_starts_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """The next build child runs ``code`` first (a sitecustomize on its PYTHONPATH)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(code)
    monkeypatch.setenv("PYTHONPATH", str(site))


def test_a_child_killed_mid_build_is_a_named_failure_of_that_build(
    tmp_path: Path, demo_assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _child_starts_with(tmp_path, monkeypatch, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    with pytest.raises(BackendError) as info:
        build_process.build_in_child("onnxruntime", str(demo_assets / "demo-cnn.onnx"), BuildOptions())
    text = str(info.value)
    assert "demo-cnn.onnx" in text and "killed by SIGKILL" in text and "out-of-memory killer" in text


def test_a_child_that_exits_without_a_result_says_so_with_its_last_output(
    tmp_path: Path, demo_assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _child_starts_with(
        tmp_path,
        monkeypatch,
        "import os, sys\nsys.stderr.write('no memory for the optimiser\\n')\nsys.stderr.flush()\nos._exit(3)\n",
    )
    with pytest.raises(BackendError) as info:
        build_process.build_in_child("onnxruntime", str(demo_assets / "demo-cnn.onnx"), BuildOptions())
    assert "exited with status 3 without a result" in str(info.value)
    assert "no memory for the optimiser" in str(info.value)


def test_the_daemon_keeps_running_its_models_when_a_build_child_dies(
    tmp_path: Path, demo_assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One model's build is killed; the other model, served from the cache, runs to the end."""
    from edged.config import parse_config
    from edged.daemon import Daemon

    doc = _doc(tmp_path, _model("cached", demo_assets, tmp_path, fps=100, count=30))
    Daemon(parse_config(doc)).run(duration_s=20)  # builds and caches the first model's plan
    doc["models"].append(_model("doomed", demo_assets, tmp_path, fps=100, count=30, batch=2))  # another plan
    _child_starts_with(tmp_path, monkeypatch, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    daemon = Daemon(parse_config(doc))
    daemon.run(duration_s=20)
    slots = daemon.models.slots
    assert slots["cached"].plan.source == "cache"
    assert slots["cached"].pipeline is not None and slots["cached"].pipeline.stats.counters()["frames_out"] == 30
    assert slots["doomed"].pipeline is None and "killed by SIGKILL" in (slots["doomed"].error or "")


_FIRST_BOOT = """
import json, sys
from edged.config import parse_config
from edged.daemon import Daemon
doc = json.loads(sys.argv[1])
daemon = Daemon(parse_config(doc))
daemon.run(duration_s=20)
slot = daemon.models.slots["m"]
print(json.dumps({"source": slot.plan.source, "folded": slot.pipeline.runner.inputs[0].dtype == "uint8",
                  "onnx": "onnx" in sys.modules, "frames": slot.pipeline.stats.counters()["frames_out"]}))
"""


def test_a_first_boot_never_imports_onnx_into_the_daemon(tmp_path: Path, demo_assets: Path) -> None:
    """The folded prefix is written with onnx; the child imports it, the daemon does not."""
    doc = _doc(tmp_path, _model("m", demo_assets, tmp_path, fps=0, count=10))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_BOOT, json.dumps(doc)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"source": "built", "folded": True, "onnx": False, "frames": 10}


def test_a_child_dies_with_the_daemon(tmp_path: Path, demo_assets: Path) -> None:
    """A daemon killed mid-build (SIGKILL, OOM) leaves no builder behind holding memory."""
    hold = tmp_path / "hold"
    hold.mkdir()
    # The child reports its pid, then sits as a long build would.
    (hold / "sitecustomize.py").write_text(
        "import os, pickle, time\n"
        f"if os.environ['PYTHONPATH'].split(os.pathsep)[0] != {str(hold)!r}:  # the child, not its daemon\n"
        f"    open({str(tmp_path / 'child.pid')!r}, 'w').write(str(os.getpid()))\n"
        "    _load = pickle.load\n"
        "    def _slow(*a, **k):\n        value = _load(*a, **k)\n        time.sleep(60)\n        return value\n"
        "    pickle.load = _slow\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from edged.plans.build_process import build_in_child; from edged.backends.base import "
            "BuildOptions; build_in_child('onnxruntime', sys.argv[1], BuildOptions())",
            str(demo_assets / "demo-cnn.onnx"),
        ],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join((str(hold), str(REPO)))),
    )
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    child = int(pid_file.read_text())
    time.sleep(1.0)  # past prctl(PR_SET_PDEATHSIG), into the held request
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and _state(child) != "Z":
        assert time.monotonic() < deadline, "the build child outlived the daemon"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
