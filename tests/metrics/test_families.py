"""The metric families: cumulative buckets, names by Prometheus' conventions, every metric
documented, nothing unmeasured reported as zero, and the textfile written atomically."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edged.atomic_file import write_atomic
from edged.config.loader import parse_config
from edged.metrics.families import HELP, families
from edged.metrics.service import MetricsService
from edged.model_state import Counters, ModelState, RunningState, SourceState
from edged.mqtt.link import MqttLink
from edged.pipeline.stats import CumulativeLatency, WindowedHistogram

REPO = Path(__file__).resolve().parents[2]
# Base units a name may end in (https://prometheus.io/docs/practices/naming/#base-units), or
# a dimensionless count/state.
UNITS = (
    "seconds",
    "bytes",
    "watts",
    "joules",
    "celsius",
    "ratio",
    "info",
    "state",
    "engines",
    "version",
    "active",
    "connected",
)


def test_cumulative_buckets_count_each_latency_at_or_below_its_bound() -> None:
    window = WindowedHistogram(window_s=1.0)
    for value in (0.05, 0.1, 0.1000001, 7.0, 10.0, 20000.0):
        window.record(value, now=100.0)
    totals = window.totals()
    cumulative = dict(totals.cumulative())
    assert cumulative[0.1] == 2  # 0.05 and exactly 0.1: a bound is inclusive, as Prometheus' le
    assert cumulative[0.25] == 3
    assert cumulative[10.0] == 5 and cumulative[10000.0] == 5
    assert cumulative[float("inf")] == totals.count == 6
    counts = [n for _, n in totals.cumulative()]
    assert counts == sorted(counts)
    assert totals.total_ms == pytest.approx(0.05 + 0.1 + 0.1000001 + 7.0 + 10.0 + 20000.0)
    # The window forgets; the totals do not, and a copy does not move with the original.
    window.record(1.0, now=500.0)
    assert window.snapshot(now=500.0).count == 1 and window.totals().count == 7 and totals.count == 6


def _state(**model: Any) -> RunningState:
    config = parse_config({"device": {"id": "n"}, "models": []})
    totals = CumulativeLatency()
    for value in (1.0, 3.0, 30.0):
        totals.record(value)
    serving = ModelState(
        "cam",
        "-",
        "dla0",
        2,
        "running",
        engines=("dla0", "dla1"),
        counters=Counters(10, 8, {"queue_full": 2}, 4, 8, 0.0),
        latency_totals={"e2e": totals},
        sources=(
            SourceState(
                "front", "rtsp", "live", detail={"state": "playing", "reconnects": 1, "outages": 1, "outage_s": 2.5}
            ),
        ),
        **model,
    )
    planning = ModelState("door", "-", "gpu", 1, "building plan 40% 3s")
    return RunningState(config, "pushed", "d", 0.0, {"cam": serving, "door": planning}, plan_builds={"built": 1})


def _samples(state: RunningState, doc: Dict[str, Any]) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for family in families(state, doc, None):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_families_from_a_snapshot() -> None:
    doc = {
        "power": {"rails_mw": {"VDD_IN": 5000.0}, "total_mw": 5000.0},
        "devices": {"dla0": {"energy_per_inference_mj": 12.0, "energy_source": "board", "active": True}},
        "temps_c": {"tj": 51.5},
    }
    samples = _samples(_state(), doc)
    assert samples["edged_model_engines"] == [
        ({"model": "cam", "device": "dla0"}, 1.0),
        ({"model": "cam", "device": "dla1"}, 1.0),
        ({"model": "door", "device": "gpu"}, 1.0),
    ]
    states = {(labels["model"], labels["state"]) for labels, value in samples["edged_model_state"] if value == 1.0}
    assert states == {("cam", "running"), ("door", "building")}
    assert samples["edged_model_frames_dropped_total"] == [({"model": "cam", "reason": "queue_full"}, 2.0)]
    assert samples["edged_model_sink_held_bytes"] == [({"model": "cam"}, 0.0)]  # a series to alert on
    disk_full = _samples(_state(sink={"error": "/data/r.jsonl: No space left on device", "held_bytes": 4096}), doc)
    assert disk_full["edged_model_sink_held_bytes"] == [({"model": "cam"}, 4096.0)]
    # A model still planning has no pipeline: no frame counters for it, not zeros.
    assert [labels["model"] for labels, _ in samples["edged_model_frames_out_total"]] == ["cam"]
    buckets = {labels["le"]: value for labels, value in samples["edged_model_latency_seconds_bucket"]}
    assert buckets["0.001"] == 1 and buckets["0.005"] == 2 and buckets["0.05"] == 3 and buckets["+Inf"] == 3
    assert samples["edged_model_latency_seconds_sum"] == [({"model": "cam", "stage": "e2e"}, pytest.approx(0.034))]
    assert samples["edged_source_state"] == [({"model": "cam", "source": "front", "state": "live"}, 1.0)]
    assert samples["edged_source_outage_seconds_total"] == [({"model": "cam", "source": "front"}, 2.5)]
    assert samples["edged_power_watts"] == [({"rail": "VDD_IN"}, 5.0)]
    assert samples["edged_device_energy_per_inference_joules"] == [({"device": "dla0", "source": "board"}, 0.012)]
    assert samples["edged_config_version"] == [({"source": "pushed"}, 0.0)]
    assert samples["edged_plan_builds_total"] == [({"result": "built"}, 1.0)]
    # Unreadable power, no MQTT link: no such series at all.
    bare = _samples(_state(), {})
    assert not {name for name in bare if name.startswith(("edged_power", "edged_board", "edged_temp", "edged_mqtt"))}


def test_names_follow_the_conventions_and_every_metric_is_documented() -> None:
    config = parse_config({"device": {"id": "n"}, "models": [], "mqtt": {"host": "127.0.0.1"}})
    assert config.mqtt is not None
    link = MqttLink(config.mqtt, "n")  # never started: its state and counters are what is read
    doc = {
        "power": {"rails_mw": {"VDD_IN": 1.0}, "total_mw": 1.0},
        "devices": {"gpu": {"energy_per_inference_mj": 1.0, "energy_source": "board", "util_pct": 5.0}},
        "temps_c": {"tj": 40.0},
    }
    doc["devices"]["dla0"] = {"active": False}
    every = families(_state(), doc, link)
    assert {f.name for f in every} == set(HELP)  # this state exercises every family
    for family in every:
        assert re.fullmatch(r"edged_[a-z][a-z0-9_]*", family.name), family.name
        assert not family.name.endswith("_total")  # the client adds it to counter samples
        assert family.name.rsplit("_", 1)[-1] in UNITS or family.type == "counter", family.name
    exported = {(f.name + ("_total" if f.type == "counter" else ""), f.type) for f in every}
    docs = (REPO / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(edged_[a-z0-9_]+)` \| (gauge|counter|histogram) \|", docs, re.M))
    assert exported == documented


def test_the_textfile_is_replaced_whole_and_a_reader_never_sees_a_part(tmp_path: Path) -> None:
    path = tmp_path / "edged.prom"
    big = b"".join(b'edged_x{n="%d"} %d\n' % (i, i) for i in range(20000)) + b"# end\n"
    small = b"edged_x 1\n# end\n"
    write_atomic(path, small, mode=0o644)
    stop = threading.Event()
    torn: List[bytes] = []

    def read() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            if not data.endswith(b"# end\n"):
                torn.append(data[-40:])

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(60):
        write_atomic(path, big if i % 2 else small, mode=0o644)
    stop.set()
    reader.join()
    assert torn == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edged.prom"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_an_unwritable_textfile_is_reported_once_and_the_service_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    target = tmp_path / "not-a-folder" / "edged.prom"
    config = parse_config({"device": {"id": "n"}, "models": [], "metrics": {"textfile": str(target)}})
    service = MetricsService(config, lambda: _state(), None)
    with caplog.at_level(logging.ERROR):
        service.write_textfile()
        service.write_textfile()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"metrics.textfile {target}: cannot write: "), errors
    target.parent.unlink()
    service.write_textfile()
    names = {f.name for f in text_string_to_metric_families(target.read_text())}
    assert {"edged_model_state", "edged_model_latency_seconds", "edged_build_info"} <= names


def test_a_taken_port_is_reported_and_the_textfile_still_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        target = tmp_path / "edged.prom"
        doc = {"http": True, "port": port, "textfile": str(target), "textfile_period_s": 1}
        config = parse_config({"device": {"id": "n"}, "models": [], "metrics": doc})
        service = MetricsService(config, lambda: _state(), None)
        with caplog.at_level(logging.ERROR):
            service.start()
        deadline = time.monotonic() + 5
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        service.stop()
    assert any(
        f"metrics: cannot listen on 127.0.0.1:{port} (metrics.address, metrics.port)" in r.getMessage()
        for r in caplog.records
    )
    assert target.exists()
