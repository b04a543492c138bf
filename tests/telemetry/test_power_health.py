from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

import pytest

from edged.telemetry.energy import CounterWindow, EnergyWindow
from edged.telemetry.health import HealthReader, discover_health
from edged.telemetry.nvml import open_nvml
from edged.telemetry.power import PowerReader, discover_power, read_power
from tests.telemetry.nvml_double import GpuDouble, NvmlDouble

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JETSON = FIXTURES / "jetson"
POWER = FIXTURES / "power"
AGX_ORIN_MW = {"VDD_GPU_SOC": 6009.6, "VDD_CPU_CV": 3993.6, "VIN_SYS_5V0": 3000.0, "VDDQ_VDD2_1V8AO": 1000.0}


def _copy(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(JETSON / name, root)
    return root


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("name", ["agx-orin-64gb-jp5", "agx-orin-32gb-jp6.0", "agx-orin-64gb-jp6.2"])
def test_agx_orin_sums_its_rails_skipping_unconnected_and_sum_channels(name: str) -> None:
    spec = discover_power(str(JETSON / name))
    assert spec.source == "ina3221" and spec.total_rail is None
    sample = read_power(spec)
    assert sample.rails_mw == pytest.approx(AGX_ORIN_MW)
    assert sample.total_mw == pytest.approx(sum(AGX_ORIN_MW.values()))


def test_orin_nx_total_is_vdd_in() -> None:
    sample = read_power(discover_power(str(JETSON / "orin-nx-16gb-jp6")))
    assert set(sample.rails_mw) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    assert sample.total_mw == pytest.approx(7500.0)


# Finding 3: Thor's total is the carrier's INA238 VIN (µW), not the sum of module rails.
def test_agx_thor_total_is_the_ina238_vin_rail_in_microwatts() -> None:
    spec = discover_power(str(JETSON / "agx-thor-jp7"))
    assert spec.source == "ina3221+ina238" and spec.total_rail == "VIN"
    sample = read_power(spec)
    assert sample.rails_mw == pytest.approx(
        {"VDD_GPU": 3990.0, "VDD_CPU_SOC_MSS": 7980.0, "VIN_SYS_5V0": 4000.0, "VIN": 27300.0}
    )
    assert sample.total_mw == pytest.approx(27300.0)


def test_jetpack4_iio_rails_and_pom_5v_in_total() -> None:
    spec = discover_power(str(POWER / "nano-jp4-iio"))
    assert spec.source == "ina3221x"
    sample = read_power(spec)
    assert sample.rails_mw == {"POM_5V_IN": 3200.0, "POM_5V_GPU": 800.0, "POM_5V_CPU": 1000.0}
    assert sample.total_mw == 3200.0


def test_rapl_turns_energy_deltas_into_power_and_survives_a_wrap(tmp_path: Path) -> None:
    root = tmp_path / "rapl"
    shutil.copytree(POWER / "x86-rapl", root)
    spec = discover_power(str(root))
    assert spec.source == "rapl" and [r.label for r in spec.rails] == ["package-0"]
    energy = root / "sys/class/powercap/intel-rapl:0/energy_uj"
    reader = PowerReader(spec)
    assert reader.read(now=10.0).rails_mw == {}  # one counter value is no power yet
    energy.write_text("13000000\n")  # 12 J in 2 s
    assert reader.read(now=12.0).total_mw == pytest.approx(6000.0)
    energy.write_text("1000\n")  # wrapped past max_energy_range_uj
    wrapped = (262143328850 - 13000000 + 1000) / 1.0 / 1000.0
    assert reader.read(now=13.0).total_mw == pytest.approx(wrapped)


def test_no_source_means_absent_fields_and_a_reason() -> None:
    spec = discover_power(str(POWER / "x86-no-power"))
    assert spec.rails == () and spec.source == ""
    assert "no INA3221/INA238 monitor, NVML GPU power or RAPL" in spec.reason
    assert read_power(spec).total_mw is None


# Finding 1: DLA nodes nest under host1x.
@pytest.mark.parametrize(
    ("name", "states"),
    [
        ("agx-xavier-jp5", {"dla0": False, "dla1": False}),
        ("agx-orin-64gb-jp5", {"dla0": True, "dla1": False}),
        ("agx-orin-32gb-jp6.0", {"dla0": False, "dla1": True}),
        ("agx-orin-64gb-jp6.2", {"dla0": True, "dla1": False}),
        ("orin-nx-16gb-jp6", {"dla0": False, "dla1": False}),
    ],
)
def test_dla_state_is_read_from_the_nested_host1x_nodes(name: str, states: dict) -> None:
    sample = HealthReader(discover_health(str(JETSON / name))).read()
    assert sample.dla_active == states
    assert "dla" not in sample.unavailable


def test_a_module_without_dla_nodes_says_where_it_looked() -> None:
    sample = HealthReader(discover_health(str(JETSON / "orin-nano-8gb-jp6"))).read()
    assert sample.dla_active == {}
    assert "host1x" in sample.unavailable["dla"] and "nvdla" in sample.unavailable["dla"]


# Finding 2: power-gated zones are kept and read as offline.
def test_power_gated_zones_read_as_offline_never_as_minus_256() -> None:
    sample = HealthReader(discover_health(str(JETSON / "agx-orin-64gb-jp5"))).read()
    assert sorted(sample.temps_offline) == ["cv0", "cv1", "cv2", "gpu"]
    assert all(value > -50 for value in sample.temps_c.values())
    assert sample.temps_c["cpu"] == 45.5 and sample.temps_c["tj"] == pytest.approx(45.468)


def test_a_zone_unreadable_at_start_is_kept_and_read_once_it_powers_up(tmp_path: Path) -> None:
    root = _copy(tmp_path, "agx-orin-64gb-jp6.2")
    temp = root / "sys/class/thermal/thermal_zone1/temp"
    assert (root / "sys/class/thermal/thermal_zone1/type").read_text().strip() == "gpu-thermal"
    temp.unlink()
    temp.mkdir()  # reading fails with an OSError, as BPMP's EAGAIN does for a gated domain
    reader = HealthReader(discover_health(str(root)))
    assert "gpu" in reader.read().temps_offline
    temp.rmdir()
    temp.write_text("51500\n")
    sample = reader.read()
    assert sample.temps_c["gpu"] == 51.5 and "gpu" not in sample.temps_offline


# Finding 7 (names): one key per sensor whatever the release calls its zone.
@pytest.mark.parametrize("name", sorted(p.name for p in JETSON.iterdir() if p.is_dir()))
def test_temperature_keys_are_stable_across_releases(name: str) -> None:
    sample = HealthReader(discover_health(str(JETSON / name))).read()
    keys = set(sample.temps_c) | set(sample.temps_offline)
    assert {"cpu", "gpu"} <= keys
    assert not any(k.endswith(("therm", "thermal", "tegra")) or k != k.lower() for k in keys)
    if not name.startswith("agx-xavier"):
        assert "tj" in keys


# Finding 4: Thor has no nvgpu load node; NVML answers.
def test_thor_gpu_load_comes_from_nvml() -> None:
    root = str(JETSON / "agx-thor-jp7")
    assert HealthReader(discover_health(root)).read().unavailable["gpu_util"].startswith("no GPU devfreq node")
    nvml, _ = open_nvml(NvmlDouble([GpuDouble("NVIDIA Thor", util_pct=37, unsupported={"nvmlDeviceGetPowerUsage"})]))
    sample = HealthReader(discover_health(root, nvml)).read()
    assert sample.gpu_util_pct == 37.0 and "gpu_util" not in sample.unavailable


def test_nvml_that_cannot_report_utilisation_says_so() -> None:
    double = NvmlDouble([GpuDouble("Orin (nvgpu)", unsupported={"nvmlDeviceGetUtilizationRates"})])
    nvml, _ = open_nvml(double)
    reader = HealthReader(discover_health(str(JETSON / "agx-thor-jp7"), nvml))
    for _ in range(3):
        sample = reader.read()
    assert sample.gpu_util_pct is None and "Not Supported" in sample.unavailable["gpu_util"]
    assert double.calls["nvmlDeviceGetUtilizationRates"] == 1  # asked once, then not again


# Finding 5: what was missing at start is looked for again.
def test_a_gpu_load_node_that_appears_late_is_found(tmp_path: Path) -> None:
    root = _copy(tmp_path, "agx-orin-64gb-jp6.2")
    node = root / "sys/class/devfreq/17000000.gpu"
    shutil.move(str(node), str(tmp_path / "later"))
    clock = Clock()
    reader = HealthReader(discover_health(str(root)), rediscover_s=30.0, clock=clock)
    assert reader.read().gpu_util_pct is None
    shutil.move(str(tmp_path / "later"), str(node))
    clock.now += 10.0
    assert reader.read().gpu_util_pct is None  # not yet time to look again
    clock.now += 25.0
    sample = reader.read()
    assert sample.gpu_util_pct == 34.5 and "gpu_util" not in sample.unavailable


def test_cpu_use_needs_two_readings(tmp_path: Path) -> None:
    root = _copy(tmp_path, "agx-orin-64gb-jp6.2")
    reader = HealthReader(discover_health(str(root)))
    assert reader.read().cpu_util_pct is None
    (root / "proc/stat").write_text("cpu  4300 0 1000 15600 0 0 0 0 0 0\n")  # +400 busy, +600 idle
    assert reader.read().cpu_util_pct == pytest.approx(40.0)


# NVML on dGPU hosts: board power and the energy counter.
def test_dgpu_power_and_energy_counter_come_from_nvml() -> None:
    gpus: List[GpuDouble] = [GpuDouble("NVIDIA H200", 120_000, 5_000_000, 80), GpuDouble("Tesla T4", 30_000)]
    gpus[1].unsupported.add("nvmlDeviceGetTotalEnergyConsumption")  # a counter needs Volta or newer
    nvml, reason = open_nvml(NvmlDouble(gpus))
    assert nvml is not None and reason == ""
    spec = discover_power(str(POWER / "x86-no-power"), nvml)
    assert spec.source == "nvml" and [r.label for r in spec.rails] == ["gpu0", "gpu1"]
    sample = PowerReader(spec).read()
    assert sample.rails_mw == {"gpu0": 120000.0, "gpu1": 30000.0} and sample.total_mw == 150000.0
    assert sample.energy_mj == {"gpu0": 5_000_000.0}


def test_nvml_missing_or_failing_is_a_reason_not_an_error() -> None:
    class Broken(NvmlDouble):
        def nvmlInit(self) -> None:
            raise self.NVMLError(9)

    assert open_nvml(Broken([]))[0] is None and "NVML" in open_nvml(Broken([]))[1]
    assert open_nvml(NvmlDouble([]))[1] == "NVML found no GPU"
    assert "not supported" not in open_nvml(NvmlDouble([]))[1]


def test_energy_per_inference_integrates_power_over_the_window() -> None:
    window = EnergyWindow(window_s=10.0)
    window.add(0.0, 1000.0, 0)
    window.add(1.0, 3000.0, 100)  # trapezoid: 2000 mW for 1 s = 2000 mJ
    window.add(2.0, 3000.0, 250)  # 3000 mJ more
    assert window.energy_mj() == pytest.approx(5000.0)
    assert window.per_inference_mj() == pytest.approx(5000.0 / 250)
    window.add(20.0, 3000.0, 250)  # samples older than the window are forgotten
    assert window.per_inference_mj() is None  # no inferences inside the window


def test_energy_per_inference_from_a_counter_and_a_driver_reload() -> None:
    window = CounterWindow(window_s=10.0)
    window.add(0.0, 1_000_000.0, 0)
    window.add(1.0, 1_012_000.0, 400)
    assert window.per_inference_mj() == pytest.approx(30.0)
    window.add(2.0, 500.0, 800)  # the counter restarted: no figure across the restart
    assert window.per_inference_mj() is None
