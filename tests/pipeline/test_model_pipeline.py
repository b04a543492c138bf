from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import onnxruntime as ort
import yaml

from edged.config import parse_config
from edged.daemon import Daemon
from edged.pipeline.preprocess import Preprocessor
from edged.pipeline.sources.synthetic import SyntheticSource


def _run_daemon(doc: Dict[str, Any]) -> Daemon:
    daemon = Daemon(parse_config(doc))
    assert daemon.run(duration_s=30) == 0
    return daemon


def test_results_equal_onnxruntime_session_run_bit_exact(demo_config: Dict[str, Any], tmp_path: Path) -> None:
    model = demo_config["models"][0]
    model["batch"] = 1
    model["preprocess"] = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    daemon = _run_daemon(demo_config)
    assert daemon.models.slots["demo"].error is None
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(40))

    # Regenerate the same frames and preprocess them independently of the pipeline.
    config = parse_config(demo_config).models[0]
    session = ort.InferenceSession(model["path"], providers=["CPUExecutionProvider"])
    spec = daemon_input_spec(model["path"])
    pre = Preprocessor(config.preprocess, spec)
    source = SyntheticSource(config.source, pre.hw)
    import threading

    stop = threading.Event()
    for record in records:
        frame = source.read(stop)
        assert frame is not None and frame.seq == record["seq"]
        (expected,) = session.run(["logits"], {"images": pre(frame.image)[None]})
        got = np.asarray(record["outputs"]["logits"], dtype=np.float32)
        assert np.array_equal(got, expected[0]), f"frame {frame.seq} differs"


def daemon_input_spec(path: str) -> Any:
    from edged.backends import BuildOptions, get_backend

    runner = get_backend("onnxruntime").load_model(path, BuildOptions())  # type: ignore[attr-defined]
    spec = runner.inputs[0]
    runner.close()
    return spec


def test_batched_results_match_per_batch_session_run(demo_config: Dict[str, Any], tmp_path: Path) -> None:
    demo_config["models"][0]["max_wait_ms"] = 1000  # always full batches of 4 from a finite source
    daemon = _run_daemon(demo_config)
    counters = daemon.models.slots["demo"].pipeline.stats.counters()  # type: ignore[union-attr]
    assert counters["frames_out"] == 40 and counters["batches"] == 10
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    config = parse_config(demo_config).models[0]
    session = ort.InferenceSession(demo_config["models"][0]["path"], providers=["CPUExecutionProvider"])
    pre = Preprocessor(config.preprocess, daemon_input_spec(demo_config["models"][0]["path"]))
    source = SyntheticSource(config.source, pre.hw)
    import threading

    frames = [source.read(threading.Event()) for _ in range(40)]
    for start in range(0, 40, 4):
        batch = np.stack([pre(f.image) for f in frames[start : start + 4]])  # type: ignore[union-attr]
        (expected,) = session.run(["logits"], {"images": batch})
        got = np.array([r["outputs"]["logits"] for r in records[start : start + 4]], dtype=np.float32)
        assert np.array_equal(got, expected)


def test_classify_reports_top_k_with_labels(demo_config: Dict[str, Any], demo_assets: Path, tmp_path: Path) -> None:
    model = demo_config["models"][0]
    model["source"] = {"type": "images", "path": str(demo_assets / "images"), "loop": False}
    model["postprocess"] = {"type": "classify", "top_k": 3, "labels": str(demo_assets / "labels.txt"), "softmax": True}
    _run_daemon(demo_config)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["origin"] for r in records) == sorted(p.name for p in (demo_assets / "images").iterdir())
    labels = (demo_assets / "labels.txt").read_text().split()
    for record in records:
        scores = [c["score"] for c in record["top_k"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert all(0 < s < 1 for s in scores)
        assert all(c["label"] == labels[c["class"]] for c in record["top_k"])


def test_a_broken_model_does_not_stop_the_others(demo_config: Dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    demo_config["models"].append(dict(demo_config["models"][0], name="bad", path=str(bad), sink={"type": "null"}))
    daemon = _run_daemon(demo_config)
    assert daemon.models.slots["bad"].state == "failed"
    assert str(bad) in (daemon.models.slots["bad"].error or "")
    assert daemon.models.slots["demo"].pipeline is not None
    assert daemon.models.slots["demo"].pipeline.stats.counters()["frames_out"] == 40


def test_sigterm_under_load_drains_and_every_frame_is_accounted_for(
    demo_config: Dict[str, Any], tmp_path: Path
) -> None:
    model = demo_config["models"][0]
    model["source"] = {"type": "synthetic", "fps": 0, "size": [240, 320]}  # saturating, endless
    model["queue_size"] = 64
    second = dict(
        model,
        name="live",
        source={"type": "synthetic", "fps": 500},
        sink={"type": "jsonl", "path": str(tmp_path / "live.jsonl")},
    )
    demo_config["models"].append(second)
    config_path = tmp_path / "edged.yaml"
    config_path.write_text(yaml.safe_dump(demo_config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 0, err
    assert elapsed < 5.0
    for name, sink in (("demo", "out.jsonl"), ("live", "live.jsonl")):
        final = [line for line in out.splitlines() if line.startswith(f"{name}:")][-1]
        match = re.search(r"in (\d+) out (\d+) dropped (\d+)", final)
        assert match, final
        frames_in, frames_out, dropped = map(int, match.groups())
        written = len((tmp_path / sink).read_text().splitlines())
        assert frames_in > 0 and written == frames_out
        assert frames_in == frames_out + dropped
