"""A short run of tools/bench_fleet.py: every figure it reports is checked, so the tool
that measured docs/fleet.md keeps working."""

from __future__ import annotations

import bench_fleet
import pytest


@pytest.mark.slow
def test_short_fleet_benchmark_loses_nothing_and_lists_everyone() -> None:
    report = bench_fleet.run(
        bench_fleet.bench_parser().parse_args(["--devices", "30", "--processes", "2", "--duration", "8"])
    )
    assert report["connected"] == 30
    assert report["devices_listed"] == [30, 30, 30] and report["devices_filtered_rows"] == 15
    assert report["push_rc"] == 0 and report["applied"] == 30
    assert report["push_summary"][0].startswith("summary: 30 expected, 30 answered: 30 applied")
    telemetry = report["telemetry"]
    assert telemetry["sent"] >= 30 * 8 and telemetry["lost"] == 0 and telemetry["duplicates"] == 0
    assert min(report["consumer_device_shares"]) > 0  # each member of the shared subscription got a share
    assert report["retained_bytes_per_device"]["status"] > 100
