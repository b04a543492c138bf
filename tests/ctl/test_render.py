"""The terminal views of edgectl, rendered for a width: one row per model or device, nothing
wider than the terminal, colour that never changes a width."""

from __future__ import annotations

import re
from typing import Any, Dict, List

import pytest

from edged.ctl.render import ago, device_row, devices_screen, fit, watch_screen

ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOW = 1_700_000_000.0


def telemetry(models: int = 8) -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        "schema": 1,
        "seq": 9,
        "models": {},
        "devices": {
            "gpu": {"models": [], "util_pct": 41.0, "energy_per_inference_mj": 95.0, "energy_source": "board"},
            "dla0": {"models": [], "active": True, "energy_per_inference_mj": 31.5},
        },
        "power": {"source": "ina3221", "rails_mw": {"VDD_IN": 14200.0}, "total_mw": 14200.0},
        "temps_c": {"cpu": 48.2, "gpu": 46.0, "tj": 49.1},
        "mqtt": {"dropped_offline": 0, "connects": 1},
    }
    for i in range(models):
        doc["models"][f"camera-{i}-detector"] = {
            "state": "running",
            "device": "dla0" if i % 2 else "gpu",
            "fps": 29.9,
            "frames": {"in": 120_000 + i, "out": 119_000 + i, "dropped": {"queue_full": 1000 * i}},
            "batch_fill": 0.75,
            "latency_ms": {"e2e": {"p50": 18.2, "p99": 61.7}, "inference": {"p99": 9.1}},
            "source": {"state": "playing"},
        }
    if models == 8:
        doc["models"]["camera-1-detector"]["engines"] = ["dla0", "dla1"]
        doc["models"]["camera-7-detector"].update(state="failed", error="source.url: rtsp://cam-7: could not connect")
    return doc


STATUS = {
    "state": "online",
    "version": "0.1.0",
    "platform": {"machine": "aarch64", "system": "Linux 5.15.148-tegra"},
    "backends": ["onnxruntime", "tensorrt"],
    "power": "ina3221",
    "ts": NOW - 120,
}


def _plain(lines: List[str]) -> List[str]:
    return [ANSI.sub("", line) for line in lines]


@pytest.mark.parametrize("width", [80, 100, 120, 140])
def test_watch_fits_the_width_with_one_row_per_model(width: int) -> None:
    lines = _plain(watch_screen("jetson-orin-nx-07", STATUS, telemetry(), 2.4, width))
    assert max(len(line) for line in lines) <= width
    header = next(i for i, line in enumerate(lines) if line.startswith("MODEL"))
    assert header and lines[header].split() == [
        "MODEL",
        "STATE",
        "DEVICE",
        "FPS",
        "P50",
        "ms",
        "P99",
        "ms",
        "DROPS",
        "mJ/INF",
        "~W",
    ]
    rows = lines[header + 1 : header + 9]
    assert [row.split()[0] for row in rows] == [f"camera-{i}-detector" for i in range(8)]
    assert rows[1].split()[1:9] == ["running", "dla0+dla1", "29.9", "18.2", "61.7", "1000", "31.5", "0.9"]
    assert lines[0].startswith("jetson-orin-nx-07 · online · edged 0.1.0 · aarch64 Linux")
    assert lines[0].endswith("last seen 2 s ago")
    assert "5.15.148" not in lines[0]  # the kernel string only in the wide view
    assert lines[1].startswith("board 14.2 W · temps tj 49°C cpu 48°C gpu 46°C · load gpu 41%")
    assert lines[header + 9] == "camera-7-detector: source.url: rtsp://cam-7: could not connect"[:width]


def test_wide_adds_detail_columns_and_the_kernel() -> None:
    lines = _plain(watch_screen("node", STATUS, telemetry(), 0.0, 140, wide=True))
    header = next(line for line in lines if line.startswith("MODEL"))
    assert header.split()[-6:] == ["IN", "OUT", "FILL", "INF", "p99", "SOURCE"]
    assert max(len(line) for line in lines) <= 140
    assert "Linux 5.15.148-tegra" in lines[0]
    assert "camera-3-detector drops: queue_full 3000" in lines


def test_colour_marks_states_without_changing_the_layout() -> None:
    plain = watch_screen("node", STATUS, telemetry(), 1.0, 100, color=False)
    coloured = watch_screen("node", STATUS, telemetry(), 1.0, 100, color=True)
    assert not any(ANSI.search(line) for line in plain)
    assert _plain(coloured) == plain
    failed = next(line for line in coloured if line.startswith("camera-7"))
    assert "\x1b[31mfailed  \x1b[0m" in failed  # red, padded inside the colour
    assert "\x1b[32mrunning \x1b[0m" in coloured[4] and "\x1b[32monline\x1b[0m" in coloured[0]


def test_an_offline_device_and_a_quiet_one() -> None:
    offline = {"state": "offline", "reason": "connection lost"}
    lines = watch_screen("node", offline, None, None, 80)
    assert lines[0].startswith("node · offline (connection lost)") and lines[0].endswith("last seen never")
    assert lines[1] == "waiting for telemetry…"
    assert watch_screen("node", None, telemetry(), 125.0, 80)[0].endswith("last seen 2 min ago")


def test_long_names_are_cut_with_an_ellipsis_never_wrapped() -> None:
    doc = telemetry(1)
    doc["models"] = {
        "a-very-long-model-name-that-would-wrap-an-eighty-column-terminal": doc["models"]["camera-0-detector"]
    }
    lines = _plain(watch_screen("node", STATUS, doc, 1.0, 80))
    row = next(line for line in lines if line.startswith("a-very"))
    assert len(row) <= 80 and row.split()[0].endswith("…")


def test_ago_and_fit() -> None:
    assert [ago(s) for s in (0.4, 2.6, 59.9, 61, 7200, 200000)] == [
        "0 s ago",
        "2 s ago",
        "59 s ago",
        "1 min ago",
        "2 h ago",
        "2 d ago",
    ]
    assert ago(None) == "never" and ago(-3) == "0 s ago"
    assert fit("abcdef", 4) == "abc…" and fit("abc", 4) == "abc"


def test_devices_in_words_with_times_as_ages() -> None:
    rows = [
        device_row("jetson-orin-nx-kitchen-01", STATUS, NOW),
        device_row("node-2", "offline", NOW),
        device_row("node-3", {"state": "offline", "reason": "connection lost", "ts": NOW - 7300}, NOW),
    ]
    for width in (80, 100, 140):
        lines = devices_screen(rows, width)
        assert max(len(line) for line in lines) <= width
        assert lines[1].split()[:3] == ["jetson-orin-nx-kitchen-01", "online", "2"]  # the name whole
    lines = devices_screen(rows, 100)
    assert lines[0].split() == ["DEVICE", "STATE", "SINCE", "EDGED", "MACHINE", "BACKENDS", "POWER"]
    assert lines[1].split()[3:] == ["min", "ago", "0.1.0", "aarch64", "onnxruntime,tensorrt", "ina3221"]
    assert lines[3].split()[:4] == ["node-3", "offline", "2", "h"]
    assert lines[-1] == "3 devices: 2 offline, 1 online"
    wide = devices_screen(rows, 140, wide=True)
    assert "Linux 5.15.148-tegra" in wide[1] and "connection lost" in wide[3]
    assert str(NOW) not in "\n".join(wide)  # no raw epoch


def test_devices_takes_a_fleet_surveys_rows() -> None:
    # Rows as a fleet survey gives them: config version, models, telemetry age.
    rows = [
        {
            "device": "n1",
            "state": "online",
            "software": "0.2.0",
            "version": 7,
            "models": "2 running",
            "telemetry_age_s": 3.2,
        }
    ]
    lines = devices_screen(rows, 100)
    assert lines[0].split() == ["DEVICE", "STATE", "SEEN", "EDGED", "CONFIG", "MODELS"]
    assert lines[1].split() == ["n1", "online", "3", "s", "ago", "0.2.0", "7", "2", "running"]
