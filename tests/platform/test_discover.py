from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import pytest

from edged.platform import GpuInfo, discover

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "platforms"
VERSIONS = {"tensorrt": "10.3.0", "onnxruntime": "1.20.1", "cuda": "12.6"}


def _discover(name: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return discover(str(FIXTURES / name), versions=lambda: dict(VERSIONS), dla_probe=None, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fixture", "soc", "part", "module", "l4t", "soc_id", "dla"),
    [
        ("agx-orin-64gb-jp6", "tegra234", "p3701-0005", "Jetson AGX Orin 64GB", "36.4.3", 35, 2),
        ("orin-nx-8gb-jp6", "tegra234", "p3767-0001", "Jetson Orin NX 8GB", "36.4.3", 35, 1),
        ("orin-nano-8gb-jp6", "tegra234", "p3767-0005", "Jetson Orin Nano 8GB (developer kit)", "36.4.3", 35, 0),
        ("agx-xavier-jp5", "tegra194", None, None, "35.4.1", 25, 2),
        ("xavier-nx-jp5", "tegra194", "p3668-0001", "Jetson Xavier NX", "35.4.1", 25, 2),
        ("agx-thor-jp7", "tegra264", None, None, "38.2.0", 38, 0),
    ],
)
def test_jetsons_are_identified(
    fixture: str, soc: str, part: Optional[str], module: Optional[str], l4t: str, soc_id: int, dla: int
) -> None:
    platform = _discover(fixture)
    assert platform.kind == "jetson" and platform.machine == "aarch64"
    assert (platform.soc, platform.module_part, platform.module_name) == (soc, part, module)
    assert (platform.l4t, platform.soc_id, platform.soc_family) == (l4t, soc_id, "Tegra")
    assert platform.dla_cores == dla
    assert platform.gpus[0].integrated and platform.gpus[0].compute_capability
    assert "asimd" in platform.cpu_flags
    assert platform.versions == VERSIONS


def test_tensorrt_answers_the_dla_count_when_present() -> None:
    platform = discover(str(FIXTURES / "orin-nx-8gb-jp6"), versions=dict, dla_probe=lambda soc, part: 7)
    assert platform.dla_cores == 7


def test_dgpu_hosts_list_each_gpu_from_the_probe() -> None:
    probe = [GpuInfo("NVIDIA RTX A4000", "8.6", 48, 16376), GpuInfo("Tesla T4", "7.5", 40, 15360)]
    platform = _discover("x86-two-dgpus", gpu_probe=lambda: probe)
    assert platform.kind == "dgpu" and platform.driver == "550.54.14"
    assert [(g.name, g.compute_capability, g.sm_count) for g in platform.gpus] == [
        ("NVIDIA RTX A4000", "8.6", 48),
        ("Tesla T4", "7.5", 40),
    ]
    without_driver_answer = _discover("x86-dgpu", gpu_probe=lambda: [])
    assert [g.name for g in without_driver_answer.gpus] == ["NVIDIA GeForce RTX 3080"]
    assert without_driver_answer.gpus[0].compute_capability is None


def test_plain_cpu_host_reports_the_isa_flags_onnxruntime_uses() -> None:
    platform = _discover("x86-cpu")
    assert platform.kind == "cpu" and platform.gpus == () and platform.dla_cores == 0
    assert platform.cpu_vendor == "GenuineIntel" and "i7-12700" in platform.cpu_model
    assert set(platform.cpu_flags) == {"sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni"}


def test_identity_separates_modules_of_one_soc() -> None:
    ids: Dict[str, object] = {name: _discover(name).identity() for name in ("agx-orin-64gb-jp6", "agx-orin-32gb-jp6")}
    assert ids["agx-orin-64gb-jp6"] != ids["agx-orin-32gb-jp6"]
