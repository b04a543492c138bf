from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List

import pytest


def _bench(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "edged.bench", *args], capture_output=True, text=True, timeout=120)


def test_json_report_is_consistent(demo_assets: Path) -> None:
    result = _bench(
        str(demo_assets / "demo-cnn.onnx"), "--batch", "4", "--iterations", "50", "--warmup", "0.2", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "onnxruntime" and report["batch"] == 4 and report["iterations"] == 50
    assert report["throughput_ips"] == pytest.approx(50 * 4 / report["duration_s"])
    lat = report["latency_ms"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["mean"] * 50 <= report["duration_s"] * 1000  # calls fit in the measured time
    assert report["device_ms"]["compute"] > 0


def test_plot_writes_a_png(demo_assets: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (python3-matplotlib) is the optional plotting dependency")
    png = tmp_path / "lat.png"
    result = _bench(str(demo_assets / "demo-cnn.onnx"), "--iterations", "30", "--warmup", "0", "--plot", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "throughput" in result.stdout


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.onnx"
    result = _bench(str(missing), "--iterations", "1")
    assert result.returncode == 1 and str(missing) in result.stderr
    assert _bench("--iterations", "1").returncode == 2


@pytest.mark.slow
def test_pipeline_efficiency_tool_reports_every_figure(demo_assets: Path, tmp_path: Path) -> None:
    tool = Path(__file__).resolve().parents[1] / "tools" / "bench_pipeline.py"
    out = tmp_path / "report.json"
    args = ["--model", str(demo_assets / "demo-cnn.onnx"), "--hw", "64", "64", "--rounds", "1", "--seconds", "0.5"]
    args += ["--memory-seconds", "2", "--json", str(out)]
    result = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert [row["batch"] for row in report["throughput"]] == [1, 8]
    for row in report["throughput"]:
        for key in ("engine_ips", "edged_ips", "peer_ips", "null_engine_ips", "null_engine_cpu_us_per_frame"):
            assert 0 < row[key]["min"] <= row[key]["median"] <= row[key]["max"], key
        assert row["ratio_edged_engine"] == pytest.approx(row["edged_ips"]["median"] / row["engine_ips"]["median"])
        assert row["ratio_edged_peer"] == pytest.approx(row["edged_ips"]["median"] / row["peer_ips"]["median"])
        by_round = row["edged_ips"]["rounds"][0] / row["engine_ips"]["rounds"][0]
        assert row["ratio_edged_engine_by_round"]["rounds"] == [pytest.approx(by_round)]
    assert report["latency"]["pipeline_e2e_p99_ms"] > 0
    assert report["latency"]["frames"] > 0
    for latency in (report["latency"], report["latency_host_preprocessing"]):
        assert latency["frames"] > 0
        assert latency["added_p50_ms"] <= latency["added_p99_ms"] <= latency["added_max_ms"]
    assert report["memory"]["daemon_rss_mb"] > report["memory"]["backend_only_rss_mb"] > 0
    assert report["memory"]["engines"] == 1  # fewer than 8 cores here: one engine, and one bare session
    assert report["memory"]["first_boot_rss_mb"] > report["memory"]["backend_only_rss_mb"]
    assert all(row["engine_edged_options_ips"]["median"] > 0 for row in report["throughput"])


@pytest.mark.slow
def test_engine_calls_tool_reports_spinning_and_calls(demo_assets: Path) -> None:
    tool = Path(__file__).resolve().parents[1] / "tools" / "bench_engine_calls.py"
    args = ["--model", str(demo_assets / "demo-cnn.onnx"), "--hw", "64", "64", "--rounds", "1", "--seconds", "0.3"]
    result = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:5]] == [
        "engine alone, spinning unbounded",
        "engine alone, spinning stop+200",
        "engine alone, spinning 200",
        "engine alone, spinning stop",
        "engine alone, spinning none",
    ]
    assert lines[5].startswith("engine call alone") and "inside edged" in lines[5]


def test_engine_calls_tool_times_batched_calls_without_the_spin_rounds(demo_assets: Path) -> None:
    tool = Path(__file__).resolve().parents[1] / "tools" / "bench_engine_calls.py"
    args = ["--model", str(demo_assets / "demo-cnn.onnx"), "--hw", "64", "64", "--rounds", "1", "--seconds", "0.5"]
    result = subprocess.run(
        [sys.executable, str(tool), *args, "--batch", "4", "--spin"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    frames = float(re.search(r"calls/s of ([0-9.]+) frames", line).group(1))  # type: ignore[union-attr]
    assert 3.0 <= frames <= 4.0  # a source faster than the engine fills the batches


def test_warm_start_tool_times_cold_and_warm_boots(tmp_path: Path) -> None:
    tool = Path(__file__).resolve().parents[1] / "tools" / "bench_warm_start.py"
    out = tmp_path / "warm.json"
    result = subprocess.run(
        [sys.executable, str(tool), "--runs", "1", "--json", str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert 0 < report["warm_median_s"] < 30 and 0 < report["cold_s"] < 60


def test_activation_memory_tool_reports_each_batch(demo_assets: Path, tmp_path: Path) -> None:
    tool = Path(__file__).resolve().parents[1] / "tools" / "bench_activation_memory.py"
    out = tmp_path / "activations.json"
    args = ["--model", str(demo_assets / "demo-cnn.onnx"), "--batches", "1", "4", "--json", str(out)]
    result = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [(r["batch"], r["mode"]) for r in rows] == [(1, "fixed"), (4, "mixed"), (4, "fixed")]
    assert all(r["load_mb"] >= 0 and r["activations_mb"] >= 0 for r in rows)


@pytest.mark.slow
def test_interleaved_tool_pairs_slices_and_edged_computes_nothing_between_its_own(demo_assets: Path) -> None:
    import bench_interleaved

    gated_runners = []
    real = bench_interleaved.GatedRunner

    def keep(inner: Any) -> Any:
        gated_runners.append(real(inner))
        return gated_runners[-1]

    bench_interleaved.GatedRunner = keep  # type: ignore[misc]
    calls: List[float] = []
    real_slice = bench_interleaved.edged_slice

    def edged_slice(pipeline: Any, gated: Any, seconds: float) -> float:
        # Between edged's slices its engine is never called: once the last results are
        # written, the frames out stay put.
        time.sleep(0.1)
        before = pipeline.stats.counters()["frames_out"]
        time.sleep(0.2)
        assert pipeline.stats.counters()["frames_out"] == before
        calls.append(seconds)
        return float(real_slice(pipeline, gated, seconds))

    bench_interleaved.edged_slice = edged_slice
    try:
        row = bench_interleaved.interleaved(str(demo_assets / "demo-cnn.onnx"), 2, 1, 3, 0.3, [64, 64], "")
    finally:
        bench_interleaved.GatedRunner, bench_interleaved.edged_slice = real, real_slice
    assert calls == [0.3, 0.3, 0.3] and len(gated_runners) == 1
    assert len(row["engine_ips"]) == len(row["edged_ips"]) == len(row["peer_ips"]) == 3
    assert all(rate > 0 for rate in row["engine_ips"] + row["edged_ips"] + row["peer_ips"])
    assert row["ratios"] == pytest.approx([b / a for a, b in zip(row["engine_ips"], row["edged_ips"])])
    assert row["peer_ratios"] == pytest.approx([b / c for c, b in zip(row["peer_ips"], row["edged_ips"])])
    assert row["preprocessing"] == "plan"


@pytest.mark.slow
def test_instances_tool_compares_k_engines_with_and_without_edged(demo_assets: Path) -> None:
    tool = Path(__file__).resolve().parents[1] / "tools" / "bench_instances.py"
    args = ["--model", str(demo_assets / "demo-cnn.onnx"), "--hw", "64", "64", "--batches", "1", "2"]
    args += ["--rounds", "2", "--seconds", "0.3"]
    result = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("batch ")]
    assert [row.split(":")[0] for row in rows] == ["batch 1", "batch 2"]
    number = r"(\d+\.\d+) \[(\d+\.\d+)\.\.(\d+\.\d+)\]"
    for row in rows:
        for label in (r"\(a\) engine ", r"\(a2\) 2 engines ", r"\(b1\) edged ", r"instances 2: ", r"b2/a ", r"b2/a2 "):
            found = re.search(label + number, row)
            assert found, (label, row)
            median, low, high = (float(v) for v in found.groups())
            assert 0 < low <= median <= high
    latency = re.search(r"one engine p50 (\S+) .*instances 2: p50 (\S+) ", result.stdout)
    assert latency and float(latency.group(1)) > 0 and float(latency.group(2)) > 0
