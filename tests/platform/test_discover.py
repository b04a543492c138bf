from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Optional

import pytest

from edged.platform import GpuInfo, discover

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JETSON = FIXTURES / "jetson"
PLATFORMS = FIXTURES / "platforms"
VERSIONS = {"tensorrt": "10.3.0", "onnxruntime": "1.20.1", "cuda": "12.6"}


def _discover(root: Path, versions: Optional[Dict[str, str]] = None, **kwargs: object):  # type: ignore[no-untyped-def]
    found = dict(VERSIONS) if versions is None else versions
    return discover(str(root), versions=lambda: dict(found), dla_probe=None, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fixture", "soc", "part", "source", "l4t", "soc_id", "dla"),
    [
        ("agx-xavier-jp5", "tegra194", None, "", "35.4.1", 25, 2),
        ("agx-orin-64gb-jp5", "tegra234", "p3701-0005", "module EEPROM", "35.4.1", 35, 2),
        ("agx-orin-32gb-jp6.0", "tegra234", "p3701-0004", "device tree", "36.3.0", 35, 2),
        ("agx-orin-64gb-jp6.2", "tegra234", "p3701-0005", "module EEPROM", "36.4.3", 35, 2),
        ("orin-nx-16gb-jp6", "tegra234", "p3767-0000", "device tree", "36.4.3", 35, 2),
        ("orin-nano-8gb-jp6", "tegra234", "p3767-0005", "device tree", "36.4.3", 35, 0),
        ("agx-thor-jp7", "tegra264", "p3834-0008", "module EEPROM", "38.2.0", 38, 0),
    ],
)
def test_jetsons_are_identified(
    fixture: str, soc: str, part: Optional[str], source: str, l4t: str, soc_id: int, dla: int
) -> None:
    platform = _discover(JETSON / fixture)
    assert platform.kind == "jetson" and platform.machine == "aarch64"
    assert (platform.soc, platform.module_part, platform.module_source) == (soc, part, source)
    assert (platform.l4t, platform.soc_id, platform.soc_family) == (l4t, soc_id, "Tegra")
    assert platform.dla_cores == dla
    assert platform.gpus[0].integrated and platform.gpus[0].compute_capability
    assert "asimd" in platform.cpu_flags
    assert platform.versions == VERSIONS


def test_r35_family_entry_is_not_taken_for_the_soc() -> None:
    # L4T R35 trees end with "nvidia,tegra23x" after "nvidia,tegra234".
    assert (JETSON / "agx-orin-64gb-jp5/proc/device-tree/compatible").read_bytes().endswith(b"tegra23x\0")
    assert _discover(JETSON / "agx-orin-64gb-jp5").soc == "tegra234"


# Finding 6: module identity.


def test_the_eeprom_names_the_module_when_the_device_tree_names_a_sibling() -> None:
    platform = _discover(JETSON / "agx-orin-64gb-jp5")
    assert "p3701-0000" in (JETSON / "agx-orin-64gb-jp5/proc/device-tree/compatible").read_text()
    assert (platform.module_part, platform.module_name) == ("p3701-0005", "Jetson AGX Orin 64GB")
    assert platform.gpus[0].sm_count == 16


def test_agx_thor_is_a_t5000_with_neoverse_v3ae_cores_and_no_dla() -> None:
    platform = _discover(JETSON / "agx-thor-jp7", versions={})
    assert platform.module_part == "p3834-0008" and "Thor" in (platform.module_name or "")
    assert platform.cpu_model == "Neoverse V3AE (0xd83)"
    assert platform.gpus[0].compute_capability == "11.0" and platform.gpus[0].sm_count == 20
    assert (platform.dla_cores, platform.dla_source) == (0, "module table")


def test_an_unknown_orin_module_counts_its_dla_nodes_not_zero(tmp_path: Path) -> None:
    root = tmp_path / "orin"
    shutil.copytree(JETSON / "agx-orin-64gb-jp6.2", root)
    (root / "sys/bus/i2c/devices/0-0050/eeprom").unlink()
    (root / "proc/device-tree/compatible").write_bytes(b"nvidia,p3737-0000+p3701-0099\0nvidia,tegra234\0")
    platform = _discover(root, versions={})
    assert platform.module_part == "p3701-0099" and platform.module_name is None
    assert (platform.dla_cores, platform.dla_source) == (2, "device nodes")
    for node in root.glob("sys/devices/platform/bus@0/13e00000.host1x/*nvdla*"):
        shutil.rmtree(node)
    assert (_discover(root, versions={}).dla_cores, _discover(root, versions={}).dla_source) == (2, "SoC default")


def test_two_thor_modules_get_different_plan_identities(tmp_path: Path) -> None:
    other = tmp_path / "thor"
    shutil.copytree(JETSON / "agx-thor-jp7", other)
    eeprom = bytearray((other / "sys/bus/i2c/devices/1-0050/eeprom").read_bytes())
    eeprom[20:42] = b"699-13834-0010-400 A.0"
    (other / "sys/bus/i2c/devices/1-0050/eeprom").write_bytes(bytes(eeprom))
    assert _discover(other).module_part == "p3834-0010"
    assert _discover(other).identity() != _discover(JETSON / "agx-thor-jp7").identity()


def test_tensorrt_answers_the_dla_count_when_present() -> None:
    platform = discover(str(JETSON / "orin-nx-16gb-jp6"), versions=dict, dla_probe=lambda soc, part: 7)
    assert (platform.dla_cores, platform.dla_source) == (7, "tensorrt")


# Finding 7: versions.


def test_without_a_tensorrt_module_the_l4t_release_gives_jetpacks_default() -> None:
    jp5 = _discover(JETSON / "agx-orin-64gb-jp5", versions={})
    assert (jp5.jetpack, jp5.jetpack_cuda, jp5.tensorrt_version) == ("5.1.2", "11.4", "8.5.2")
    assert jp5.tensorrt_origin == "L4T R35.4.1 → JetPack 5.1.2 default"
    jp60 = _discover(JETSON / "agx-orin-32gb-jp6.0", versions={})
    assert (jp60.jetpack, jp60.tensorrt_version) == ("6.0", "8.6.2")
    thor = _discover(JETSON / "agx-thor-jp7", versions={})
    assert (thor.jetpack, thor.jetpack_cuda, thor.tensorrt_version) == ("7.0", "13.0", "10.13.3")


def test_an_imported_tensorrt_wins_over_the_table() -> None:
    platform = _discover(JETSON / "agx-orin-64gb-jp5", versions={"tensorrt": "8.5.2.2"})
    assert (platform.tensorrt_version, platform.tensorrt_origin) == ("8.5.2.2", "tensorrt module")
    assert platform.jetpack == "5.1.2"


def test_dgpu_hosts_list_each_gpu_from_the_probe() -> None:
    probe = [GpuInfo("NVIDIA RTX A4000", "8.6", 48, 16376), GpuInfo("Tesla T4", "7.5", 40, 15360)]
    platform = _discover(PLATFORMS / "x86-two-dgpus", gpu_probe=lambda: probe)
    assert platform.kind == "dgpu" and platform.driver == "550.54.14"
    assert [(g.name, g.compute_capability, g.sm_count) for g in platform.gpus] == [
        ("NVIDIA RTX A4000", "8.6", 48),
        ("Tesla T4", "7.5", 40),
    ]
    without_driver_answer = _discover(PLATFORMS / "x86-dgpu", gpu_probe=lambda: [])
    assert [g.name for g in without_driver_answer.gpus] == ["NVIDIA GeForce RTX 3080"]
    assert without_driver_answer.gpus[0].compute_capability is None


def test_plain_cpu_host_reports_the_isa_flags_onnxruntime_uses() -> None:
    platform = _discover(PLATFORMS / "x86-cpu")
    assert platform.kind == "cpu" and platform.gpus == () and platform.dla_cores == 0
    assert platform.cpu_vendor == "GenuineIntel" and "i7-12700" in platform.cpu_model
    assert set(platform.cpu_flags) == {"sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni"}


def test_identity_separates_modules_of_one_soc() -> None:
    a = _discover(JETSON / "agx-orin-64gb-jp6.2").identity()
    b = _discover(JETSON / "agx-orin-32gb-jp6.0").identity()
    assert a["module_part"] != b["module_part"] and a["gpus"] != b["gpus"]
