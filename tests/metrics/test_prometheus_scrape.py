"""The real programs: Debian's Prometheus server scrapes edged's endpoint and node_exporter
serves edged's textfile; PromQL over Prometheus' HTTP API returns edged's series."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.metrics.daemon import models, start, write_config
from tests.mqtt.broker import Mosquitto, free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def _wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _get(url, 1.0)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _query(port: int, promql: str) -> List[Dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    answer = json.loads(_get(url))
    assert answer["status"] == "success", answer
    result: List[Dict[str, Any]] = answer["data"]["result"]
    return result


def _poll(port: int, promql: str, timeout: float = 30.0) -> List[Dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = _query(port, promql)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def _prometheus(tmp_path: Path, targets: str) -> "tuple[subprocess.Popen[bytes], int]":
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: edged\n    static_configs:\n      - targets: ['{targets}']\n"
    )
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/-/ready", 30)
    except OSError:
        proc.kill()
        raise AssertionError(f"prometheus did not start: {proc.communicate()[1].decode()[-2000:]}") from None
    return proc, port


def _value(found: List[Dict[str, Any]], **labels: str) -> Optional[float]:
    for series in found:
        if all(series["metric"].get(k) == v for k, v in labels.items()):
            return float(series["value"][1])
    return None


@pytest.mark.slow
def test_prometheus_scrapes_edged_and_promql_returns_its_series(
    broker: Mosquitto, tmp_path: Path, demo_assets: Path
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        {
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "backoff_max_s": 0.5},
            "metrics": {"http": True, "port": port},
            "models": models(demo_assets, tmp_path, ["cam", "door"], fps=20),
        },
    )
    edged = start(config)
    prometheus, prom_port = _prometheus(tmp_path, f"127.0.0.1:{port}")
    try:
        up = _poll(prom_port, 'up{job="edged"} == 1')
        assert up, "prometheus never scraped edged successfully"
        frames = _poll(prom_port, "edged_model_frames_out_total > 20")
        assert {s["metric"]["model"] for s in frames} == {"cam", "door"}
        # Throughput, and the e2e p99 from the buckets aggregated over both models: what a
        # fleet dashboard does, which windowed percentiles could not give.
        rate = _poll(prom_port, "rate(edged_model_frames_out_total[5s])")
        assert all(5 < float(s["value"][1]) < 40 for s in rate), rate  # the sources run at 20 fps
        p99 = _poll(
            prom_port,
            'histogram_quantile(0.99, sum by (le) (rate(edged_model_latency_seconds_bucket{stage="e2e"}[5s])))',
        )
        assert p99 and 0 < float(p99[0]["value"][1]) < 1.0, p99
        state = _query(prom_port, "edged_model_state == 1")
        assert {(s["metric"]["model"], s["metric"]["state"]) for s in state} == {
            ("cam", "running"),
            ("door", "running"),
        }
        placement = _query(prom_port, "edged_model_engines")
        assert {(s["metric"]["model"], s["metric"]["device"]) for s in placement} == {("cam", "cpu"), ("door", "cpu")}
        # The Orin fixture tree: rails, their total, temperatures, energy per inference.
        rails = _query(prom_port, "edged_power_watts")
        assert _value(rails, rail="VDD_GPU_SOC") == pytest.approx(6.0096)
        assert _query(prom_port, "edged_board_power_watts")
        assert _value(_query(prom_port, "edged_temperature_celsius"), zone="tj") == pytest.approx(47.5)
        assert _poll(prom_port, 'edged_device_energy_per_inference_joules{device="cpu",source="board"} > 0')
        assert _value(_query(prom_port, "edged_mqtt_connected")) == 1.0
        assert _value(_query(prom_port, "edged_config_version"), source="file") == 0.0
        assert _value(_query(prom_port, "edged_plan_builds_total"), result="built") == 2.0
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        edged.send_signal(signal.SIGTERM)
        _, err = edged.communicate(timeout=20)
    assert edged.returncode == 0, err[-2000:]


@pytest.mark.slow
def test_node_exporter_serves_the_textfile_edged_writes(tmp_path: Path, demo_assets: Path) -> None:
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    config = write_config(
        tmp_path,
        {
            "metrics": {"textfile": str(textfiles / "edged.prom"), "textfile_period_s": 1},
            "models": models(demo_assets, tmp_path, ["cam"]),
        },
    )
    edged = start(config)
    port = free_port()
    exporter = subprocess.Popen(
        [
            NODE_EXPORTER,
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={textfiles}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/metrics", 20)
        deadline = time.monotonic() + 30
        text = ""
        while 'edged_model_frames_out_total{model="cam"}' not in text and time.monotonic() < deadline:
            time.sleep(0.5)
            text = _get(f"http://127.0.0.1:{port}/metrics").decode()
        assert 'edged_model_frames_out_total{model="cam"}' in text
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        e2e = ("edged_model_latency_seconds_bucket", (("le", "+Inf"), ("model", "cam"), ("stage", "e2e")))
        assert samples[e2e] > 0
        # node_exporter reports a file it could not parse with node_textfile_scrape_error 1.
        assert "node_textfile_scrape_error 0" in text
        assert [p.name for p in textfiles.iterdir()] == ["edged.prom"]  # no temporary file left
    finally:
        exporter.terminate()
        exporter.wait(10)
        edged.send_signal(signal.SIGTERM)
        _, err = edged.communicate(timeout=20)
    assert edged.returncode == 0, err[-2000:]
