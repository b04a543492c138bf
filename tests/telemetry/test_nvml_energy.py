"""NVML on a dGPU host: the telemetry document carries board power and, per GPU, energy per
inference from that GPU's own energy counter (NVML double: tests/telemetry/nvml_double.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import jsonschema
import pytest

from edged.model_state import ModelState, counters_of
from edged.pipeline.stats import ModelStats
from edged.telemetry.nvml import open_nvml
from edged.telemetry.power import PowerReader, discover_power
from edged.telemetry.snapshot import Snapshotter
from tests.telemetry.nvml_double import GpuDouble, NvmlDouble

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "edged/telemetry/schema.json").read_text())


def test_each_gpu_reports_energy_per_inference_from_its_own_counter() -> None:
    gpus = [GpuDouble("NVIDIA H200", 300_000, 1_000_000), GpuDouble("NVIDIA H200", 100_000, 2_000_000)]
    nvml, _ = open_nvml(NvmlDouble(gpus))
    reader = PowerReader(discover_power(str(REPO / "tests/fixtures/power/x86-no-power"), nvml))
    snapshotter = Snapshotter("host", reader, None, window_s=60.0)
    det, seg = ModelStats(), ModelStats()

    def views() -> Dict[str, ModelState]:
        return {
            "det": ModelState("det", "-", "gpu0", 1, "running", counters=counters_of(det)),
            "seg": ModelState("seg", "-", "gpu1", 1, "running", counters=counters_of(seg)),
        }

    snapshotter.snapshot(views())
    gpus[0].energy_mj += 60_000  # 60 J over 200 inferences on gpu0
    gpus[1].energy_mj += 5_000  # 5 J over 50 on gpu1
    det.count_out(200)
    seg.count_out(50)
    doc = snapshotter.snapshot(views())
    jsonschema.validate(doc, SCHEMA)
    assert doc["power"] == {
        "source": "nvml",
        "rails_mw": {"gpu0": 300000.0, "gpu1": 100000.0},
        "total_mw": 400000.0,
    }
    assert doc["devices"]["gpu0"]["energy_per_inference_mj"] == pytest.approx(300.0)
    assert doc["devices"]["gpu1"]["energy_per_inference_mj"] == pytest.approx(100.0)
    assert doc["devices"]["gpu0"]["energy_source"] == "nvml energy counter"
