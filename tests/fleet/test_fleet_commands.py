"""edgectl at fleet size against a real mosquitto and simulated devices running edged's
real link, control plane, presence answers and telemetry publisher."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.fleet.conftest import StartDevices, edgectl
from tests.mqtt.broker import Mosquitto


def _rows(stdout: str) -> dict:
    """The device table (edged/ctl/render.py) by column: cells are read at the header's
    offsets, since some hold spaces ("2 s ago"); the last line is the count by state."""
    lines = stdout.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    names = [lines[0][a:b].strip().lower() for a, b in zip(starts, [*starts[1:], None])]
    rows = {}
    for line in lines[1:-1]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
        rows[cells[0]] = dict(zip(names, cells))
    return rows


def test_devices_lists_filters_and_says_when_it_found_nothing(broker: Mosquitto, sim_devices: StartDevices) -> None:
    empty = edgectl(broker.port, "devices", "--wait", "0.5")
    assert empty.returncode == 3 and "found no devices: nobody answered the presence query" in empty.stderr

    sim_devices(broker.port, 6, groups=lambda i: ["fleet", "a" if i % 2 == 0 else "b"])
    listed = edgectl(broker.port, "devices", "--wide")
    assert listed.returncode == 0, listed.stderr
    rows = _rows(listed.stdout)
    assert sorted(rows) == [f"sim-0000{i}" for i in range(6)]
    assert {r["state"] for r in rows.values()} == {"online"}
    assert rows["sim-00000"]["groups"] == "fleet,a" and rows["sim-00001"]["groups"] == "fleet,b"
    assert "6 answered" in listed.stderr

    only_a = edgectl(broker.port, "devices", "--group", "a", "--wide")
    assert sorted(_rows(only_a.stdout)) == ["sim-00000", "sim-00002", "sim-00004"]
    none = edgectl(broker.port, "devices", "--state", "offline")
    assert none.returncode == 0 and none.stdout.strip() == "(no device matches the filters)"


def test_group_push_summarises_and_canary_waves_stop_at_a_failing_wave(
    broker: Mosquitto, sim_devices: StartDevices, tmp_path: Path
) -> None:
    devices = sim_devices(broker.port, 7, groups=lambda i: ["fleet"], fail=(3,), apply_s=0.05)
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"patch": {"telemetry": {"period_s": 2}}}))

    # One group message; seven answers; one device rolls back; an eighth is expected and silent.
    out = edgectl(
        broker.port,
        "--timeout",
        "4",
        "push",
        "--group",
        "fleet",
        str(patch),
        "--version",
        "2",
        "--expect",
        "8",
        "--quiet",
    )
    assert out.returncode == 3, out.stdout + out.stderr
    assert "sim-00003: rolled_back version 2" in out.stdout and "sim-00000" not in out.stdout  # --quiet
    summary = re.search(r"summary: (.*)", out.stdout)
    assert summary and summary.group(1).startswith(
        "8 expected, 7 answered: 6 applied, 0 rejected, 1 rolled back, 0 failed, 1 silent"
    )
    assert re.search(r"time to result p50 \d+\.\d\d s, p99 \d+\.\d\d s", out.stdout)
    assert "7 of 8 devices answered" in out.stderr
    listed = _rows(edgectl(broker.port, "devices", "--version", "2").stdout)
    assert sorted(listed) == [d.id for d in devices if d.id != "sim-00003"]

    # Waves of 2, 4, ...: sim-00003 fails in the second wave, and the rest never see the push.
    out = edgectl(broker.port, "push", "--group", "fleet", str(patch), "--version", "3", "--canary", "2", "--quiet")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "wave 1/3: 2 devices" in out.stderr and "wave 2/3: 4 devices" in out.stderr
    assert "edgectl: wave 2 failed; stopped before 1 more devices" in out.stderr
    assert "7 expected, 6 answered: 5 applied, 0 rejected, 1 rolled back" in out.stdout
    assert [d.host.config.version for d in devices] == [3, 3, 3, 0, 3, 3, 2]
