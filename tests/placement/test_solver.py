"""Multi-model placement with given profiles on fixture platforms (presets of real boards)."""

from __future__ import annotations

from typing import Dict, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.placement.profiles import Profile, profile_from_dict
from edged.placement.solver import Request, place
from edged.placement.target import preset

GPU_MW, DLA_MW = 15000.0, 2000.0


def profiles(model: str, devices: Dict[str, float]) -> Dict[str, Profile]:
    return {
        d: Profile(model, d, ms, DLA_MW if d.startswith("dla") else GPU_MW, source="measured")
        for d, ms in devices.items()
    }


def three_models(platform: str, segmenter_fps: float = 25.0, budget: Optional[float] = None) -> list:
    devices = preset(platform).devices()
    dlas = [d for d in devices if d.startswith("dla")]

    def on(dla_ms: float, gpu_ms: float) -> Dict[str, float]:
        out = {d: dla_ms for d in dlas}
        out["gpu"] = gpu_ms
        return out

    return [
        Request("detector", profiles("detector", on(10.0, 5.0)), 40.0, budget),
        Request("classifier", profiles("classifier", on(4.0, 2.0)), 150.0),
        # Fragmented on the DLA, so only a GPU profile exists.
        Request("segmenter", profiles("segmenter", {"gpu": 12.0}), segmenter_fps),
    ]


def test_orin_nx_8gb_one_dla_meets_targets() -> None:
    p = place(three_models("orin-nx-8gb"), preset("orin-nx-8gb").devices())
    assert p.feasible, p.shortfalls
    # dla0 cannot hold both (0.4 + 0.6 busy > 0.9); moving the detector costs less power.
    assert p.devices_of("classifier") == ("dla0",)
    assert p.devices_of("detector") == ("gpu",)
    assert "lower-power dla0 has no room left" in p.assignments["detector"].reason
    assert p.devices_of("segmenter") == ("gpu",)
    assert p.utilisation == pytest.approx({"dla0": 0.6, "gpu": 0.5})
    assert all(a.predicted_fps == a.target_fps for a in p.assignments.values())


def test_agx_orin_two_dlas_take_both_dla_models() -> None:
    p = place(three_models("agx-orin-64gb"), preset("agx-orin-64gb").devices())
    assert p.feasible
    assert p.devices_of("classifier") == ("dla0",) and p.devices_of("detector") == ("dla1",)
    assert p.utilisation == pytest.approx({"dla0": 0.6, "dla1": 0.4, "gpu": 0.3})
    assert p.power_mw == pytest.approx(0.6 * DLA_MW + 0.4 * DLA_MW + 0.3 * GPU_MW)


def test_placement_is_deterministic_whatever_the_input_order() -> None:
    devices = preset("agx-orin-64gb").devices()
    first = place(three_models("agx-orin-64gb"), devices).as_dict()
    for _ in range(3):
        assert place(list(reversed(three_models("agx-orin-64gb"))), devices).as_dict() == first


def test_infeasible_set_names_the_shortfall() -> None:
    p = place(three_models("orin-nx-8gb", segmenter_fps=100.0), preset("orin-nx-8gb").devices())
    assert not p.feasible
    assert len(p.shortfalls) == 1 and p.shortfalls[0].startswith("segmenter: needs 100 fps")
    seg = p.assignments["segmenter"]
    assert not seg.met and seg.predicted_fps < 100.0 and "gpu" in seg.reason
    # The best partial placement still serves the others in full.
    assert p.assignments["classifier"].met and p.assignments["detector"].met


def test_latency_budget_rules_out_slow_devices() -> None:
    reqs = three_models("agx-orin-64gb", budget=6.0)
    p = place(reqs, preset("agx-orin-64gb").devices())
    assert p.devices_of("detector") == ("gpu",)  # 10 ms on a DLA > 6 ms budget
    assert p.assignments["detector"].excluded["dla1"] == "10.00 ms > 6 ms budget (measured)"


def test_unplaceable_model_is_named_with_reasons() -> None:
    req = Request("big", profiles("big", {"gpu": 50.0}), 10.0, 20.0)
    p = place([req], ["gpu"])
    assert p.shortfalls == ["big: cannot be placed: gpu: 50.00 ms > 20 ms budget (measured)"]


def test_heavy_model_is_split_across_both_dla_cores() -> None:
    req = Request("heavy", profiles("heavy", {"dla0": 10.0, "dla1": 10.0, "gpu": 5.0}), 150.0)
    p = place([req], ["dla0", "dla1", "gpu"])
    a = p.assignments["heavy"]
    assert a.devices == ("dla0", "dla1") and a.instances == 2 and a.met
    assert p.utilisation["dla0"] == pytest.approx(0.75)


def test_replanning_keeps_models_that_need_not_move() -> None:
    devices = preset("agx-orin-64gb").devices()
    previous = {"classifier": ("dla1",), "detector": ("dla0",)}  # the mirror of the fresh choice
    extra = Request("tracker", profiles("tracker", {"dla0": 2.0, "dla1": 2.0, "gpu": 1.0}), 30.0)
    p = place([*three_models("agx-orin-64gb"), extra], devices, previous)
    assert p.devices_of("classifier") == ("dla1",) and p.devices_of("detector") == ("dla0",)
    assert p.feasible and p.devices_of("tracker")[0].startswith("dla")


def test_failed_dla_build_falls_back_to_gpu_with_reason() -> None:
    reqs = three_models("orin-nx-8gb")
    reqs[1] = reqs[1].without("dla0", "DLA build failed: out of DLA memory")
    p = place(reqs, preset("orin-nx-8gb").devices())
    a = p.assignments["classifier"]
    assert a.devices == ("gpu",)
    assert a.as_dict()["not_on"] == {"dla0": "DLA build failed: out of DLA memory"}
    assert p.devices_of("detector") == ("dla0",)  # the freed core goes to the next model


def test_many_models_use_the_greedy_search_deterministically() -> None:
    devices = ["dla0", "dla1", "gpu"]
    reqs = [
        Request(f"m{i:02d}", profiles(f"m{i:02d}", {"dla0": 4.0, "dla1": 4.0, "gpu": 2.0}), 20.0) for i in range(14)
    ]
    first = place(reqs, devices)
    assert first.feasible and first.as_dict() == place(list(reversed(reqs)), devices).as_dict()
    # 14 x 0.08 busy: the DLAs fill up to the cap first, the rest go to the GPU.
    on_dla = [a for a in first.assignments.values() if a.device.startswith("dla")]
    assert len(on_dla) == 14 and max(first.utilisation.values()) <= 0.9


def test_measured_profile_round_trips_from_a_manifest() -> None:
    prof = Profile("m", "dla1", 3.25, 1800.0, gpu_ms=0.4, batch=2, source="measured")
    assert profile_from_dict(prof.as_dict()) == prof
    assert prof.max_fps == pytest.approx(2000.0 / 3.25)


def test_two_different_dgpus_are_separate_devices() -> None:
    devices = preset("x86-2dgpu").devices()
    assert devices == ["gpu0", "gpu1"]
    fast = Request("fast", profiles("fast", {"gpu0": 2.0, "gpu1": 12.0}), 300.0)
    slow = Request("slow", profiles("slow", {"gpu0": 4.0, "gpu1": 8.0}), 100.0)
    p = place([fast, slow], devices)
    assert p.feasible and p.devices_of("fast") == ("gpu0",) and p.devices_of("slow") == ("gpu1",)
    assert p.utilisation == pytest.approx({"gpu0": 0.6, "gpu1": 0.8})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(1.0, 20.0), st.floats(0.5, 10.0), st.floats(1.0, 120.0), st.booleans()),
        min_size=1,
        max_size=4,
    )
)
def test_solver_invariants(specs: list) -> None:
    devices = ["dla0", "dla1", "gpu"]
    reqs = []
    for i, (dla_ms, gpu_ms, fps, dla_ok) in enumerate(specs):
        timing = {"dla0": dla_ms, "dla1": dla_ms, "gpu": gpu_ms} if dla_ok else {"gpu": gpu_ms}
        reqs.append(Request(f"m{i}", profiles(f"m{i}", timing), fps))
    p = place(reqs, devices)
    assert p.as_dict() == place(list(reversed(reqs)), devices).as_dict()
    assert set(p.assignments) == {r.model for r in reqs}
    for a in p.assignments.values():
        assert a.devices and a.predicted_fps <= a.target_fps + 1e-9
        assert (a.model in " ".join(p.shortfalls)) != a.met
    if p.feasible:
        assert max(p.utilisation.values()) <= 0.9 + 1e-9


def test_target_from_a_discovered_platform() -> None:
    from types import SimpleNamespace

    from edged.placement.target import from_platform

    nx = SimpleNamespace(soc="tegra234", dla_cores=1, gpus=[SimpleNamespace(name="Orin")], model="Orin NX 8GB")
    target = from_platform(nx)
    assert (target.name, target.trt_version, target.dla_generation) == ("Orin NX 8GB", "10.3", 2)
    assert target.devices() == ["dla0", "gpu"]
    xavier = from_platform(SimpleNamespace(soc="tegra194", dla_cores=2, gpus=["Xavier"], tensorrt_version="8.5.2"))
    assert xavier.devices() == ["dla0", "dla1", "gpu"] and xavier.dla_generation == 1
    cpu = from_platform(SimpleNamespace(soc=None, dla_cores=0, gpus=[]))
    assert cpu.devices() == ["cpu"]
