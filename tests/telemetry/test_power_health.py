from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edged.telemetry.energy import EnergyWindow
from edged.telemetry.health import HealthReader, discover_health
from edged.telemetry.power import PowerReader, discover_power, read_power

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "power"


def test_agx_orin_sums_its_rails_and_skips_unconnected_channels() -> None:
    spec = discover_power(str(FIXTURES / "agx-orin-64gb-jp6"))
    assert spec.source == "ina3221"
    sample = read_power(spec)
    assert sample.rails_mw == pytest.approx(
        {"VDD_GPU_SOC": 6009.6, "VDD_CPU_CV": 4006.4, "VIN_SYS_5V0": 3000.0, "VDDQ_VDD2_1V8AO": 1000.0}
    )
    assert sample.total_mw == pytest.approx(6009.6 + 4006.4 + 3000.0 + 1000.0)


def test_orin_nx_total_is_vdd_in() -> None:
    sample = read_power(discover_power(str(FIXTURES / "orin-nx-8gb-jp6")))
    assert set(sample.rails_mw) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    assert sample.total_mw == pytest.approx(7500.0)


def test_jetpack4_iio_rails_and_pom_5v_in_total() -> None:
    spec = discover_power(str(FIXTURES / "nano-jp4-iio"))
    assert spec.source == "ina3221x"
    sample = read_power(spec)
    assert sample.rails_mw == {"POM_5V_IN": 3200.0, "POM_5V_GPU": 800.0, "POM_5V_CPU": 1000.0}
    assert sample.total_mw == 3200.0


def test_rapl_turns_energy_deltas_into_power_and_survives_a_wrap(tmp_path: Path) -> None:
    root = tmp_path / "rapl"
    shutil.copytree(FIXTURES / "x86-rapl", root)
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
    spec = discover_power(str(FIXTURES / "x86-no-power"))
    assert spec.rails == () and spec.source == ""
    assert "no INA3221" in spec.reason
    assert read_power(spec).total_mw is None


def test_health_reads_temperatures_gpu_load_dla_state_and_cpu_use(tmp_path: Path) -> None:
    root = tmp_path / "orin"
    shutil.copytree(FIXTURES / "agx-orin-64gb-jp6", root)
    reader = HealthReader(discover_health(str(root)))
    first = reader.read()
    assert first.temps_c == {"cpu-thermal": 45.5, "gpu-thermal": 43.0}
    assert first.gpu_util_pct == 34.5
    assert first.dla_active == {"dla0": True, "dla1": False}
    assert first.cpu_util_pct is None  # needs two /proc/stat readings
    (root / "proc/stat").write_text("cpu  4300 0 1100 15600 0 0 0 0 0 0\n")  # +400 busy, +600 idle
    assert reader.read().cpu_util_pct == pytest.approx(40.0)


def test_energy_per_inference_integrates_power_over_the_window() -> None:
    window = EnergyWindow(window_s=10.0)
    window.add(0.0, 1000.0, 0)
    window.add(1.0, 3000.0, 100)  # trapezoid: 2000 mW for 1 s = 2000 mJ
    window.add(2.0, 3000.0, 250)  # 3000 mJ more
    assert window.energy_mj() == pytest.approx(5000.0)
    assert window.per_inference_mj() == pytest.approx(5000.0 / 250)
    window.add(20.0, 3000.0, 250)  # samples older than the window are forgotten
    assert window.per_inference_mj() is None  # no inferences inside the window
