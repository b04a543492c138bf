"""``edged info --json --root DIR`` on every Jetson fixture: module, SoC, DLA count, L4T,
JetPack, default TensorRT (with its origin) and the power rails it will read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import pytest

from edged.cli import EXIT_OK, main

JETSON = Path(__file__).resolve().parents[1] / "fixtures" / "jetson"
AGX_ORIN_RAILS = ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
NX_RAILS = ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
XAVIER_RAILS = ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]
THOR_RAILS = ["VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0", "VIN"]

CASES = [
    # fixture, module part, SoC, DLA, L4T, JetPack, TensorRT, rails, total
    ("agx-xavier-jp5", None, "tegra194", 2, "35.4.1", "5.1.2", "8.5.2", XAVIER_RAILS, None),
    ("agx-orin-64gb-jp5", "p3701-0005", "tegra234", 2, "35.4.1", "5.1.2", "8.5.2", AGX_ORIN_RAILS, None),
    ("agx-orin-32gb-jp6.0", "p3701-0004", "tegra234", 2, "36.3.0", "6.0", "8.6.2", AGX_ORIN_RAILS, None),
    ("agx-orin-64gb-jp6.2", "p3701-0005", "tegra234", 2, "36.4.3", "6.2", "10.3.0", AGX_ORIN_RAILS, None),
    ("orin-nx-16gb-jp6", "p3767-0000", "tegra234", 2, "36.4.3", "6.2", "10.3.0", NX_RAILS, "VDD_IN"),
    ("orin-nano-8gb-jp6", "p3767-0005", "tegra234", 0, "36.4.3", "6.2", "10.3.0", NX_RAILS, "VDD_IN"),
    ("agx-thor-jp7", "p3834-0008", "tegra264", 0, "38.2.0", "7.0", "10.13.3", THOR_RAILS, "VIN"),
]  # fmt: skip


def test_every_fixture_has_a_case() -> None:
    assert sorted(case[0] for case in CASES) == sorted(p.name for p in JETSON.iterdir() if p.is_dir())


@pytest.mark.parametrize(("fixture", "part", "soc", "dla", "l4t", "jetpack", "trt", "rails", "total"), CASES)
def test_info_json_describes_the_device_under_root(
    capsys: pytest.CaptureFixture,
    fixture: str,
    part: Optional[str],
    soc: str,
    dla: int,
    l4t: str,
    jetpack: str,
    trt: str,
    rails: List[str],
    total: Optional[str],
) -> None:
    assert main(["info", "--json", "--root", str(JETSON / fixture)]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    p = info["platform"]
    assert (p["module_part"], p["soc"], p["dla_cores"], p["l4t"], p["jetpack"]) == (part, soc, dla, l4t, jetpack)
    assert p["tensorrt_version"] == trt
    assert p["tensorrt_origin"] == f"L4T R{l4t} → JetPack {jetpack} default"
    assert p["versions"] == {}  # nothing of this host's libraries is reported for another root
    assert info["power"]["rails"] == rails
    assert info["power"]["total"] == (total or "sum of rails")
    assert "backends" not in info


def test_info_text_names_the_tensorrt_origin(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "--root", str(JETSON / "agx-orin-32gb-jp6.0")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "tensorrt_origin: L4T R36.3.0 → JetPack 6.0 default" in out
    assert "power rails: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO; total: sum of rails" in out


def test_info_names_the_cpus_edged_may_use_and_what_limits_them(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import edged.cpu_limits as limits

    assert main(["info", "--json"]) == EXIT_OK
    cpus = json.loads(capsys.readouterr().out)["cpus"]
    assert cpus["usable"] == ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    assert cpus["online"] == os.cpu_count()
    # What a service under CPUQuota=150% and a seccomp filter refusing pins would show.
    monkeypatch.setattr(limits, "cpu_quota", lambda: 1.5)
    monkeypatch.setattr(limits, "pinning_allowed", lambda: False)
    assert main(["info"]) == EXIT_OK
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cpus: "))
    assert line.endswith("; CPU quota: 1.5 CPUs; thread pinning: refused (threads run unpinned)")
