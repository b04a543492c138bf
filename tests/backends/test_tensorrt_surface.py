"""Every TensorRT name the backend uses exists in each version that can reach it (tables
from NVIDIA's binding sources, copied in tests/trt_double/api/), and the check catches a
removed call used outside a version gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.backends.tensorrt.options import DLA_POOLS
from tests.backends.trt_surface import ALL_VERSIONS, check, check_package, collect, load_tables

PACKAGE = Path(__file__).resolve().parents[2] / "edged" / "backends" / "tensorrt"
RUNNER = (PACKAGE / "runner.py").read_text(encoding="utf-8")
V3_CALL = "slot.context.execute_async_v3(slot.stream.handle)"


def test_backend_uses_only_names_of_every_supported_version() -> None:
    uses, violations = check_package(PACKAGE)
    assert not violations, "\n".join(map(str, violations))
    used = {(u.owner, u.name) for u in uses}
    # The collector must see the calls that matter, or an empty pass would prove nothing.
    for expected in [
        ("IExecutionContext", "execute_async_v3"),
        ("IExecutionContext", "set_tensor_address"),
        ("Builder", "build_serialized_network"),
        ("Runtime", "DLA_core"),
        ("Runtime", "deserialize_cuda_engine"),
        ("IBuilderConfig", "DLA_core"),
        ("IBuilderConfig", "default_device_type"),
        ("BuilderFlag", "GPU_FALLBACK"),
        ("BuilderFlag", "FP16"),
        ("IBuilderConfig", "progress_monitor"),
        ("ICudaEngine", "create_engine_inspector"),
    ]:
        assert expected in used
    gated = {(u.owner, u.name): u.versions for u in uses}
    assert gated[("BuilderFlag", "FP16")] == {"8.5", "8.6", "10.3", "10.16"}
    assert gated[("IBuilderConfig", "progress_monitor")] == {"10.3", "10.16", "11.1"}


def test_dla_pool_names_exist_everywhere() -> None:
    for version, table in load_tables().items():
        assert set(DLA_POOLS.values()) <= set(table["enums"]["MemoryPoolType"]), version


def _check(source: str) -> list:  # type: ignore[type-arg]
    tables = load_tables()
    return check(collect(source, "runner.py", tables), tables)


def test_removed_call_outside_a_gate_fails() -> None:
    assert V3_CALL in RUNNER
    broken = RUNNER.replace(V3_CALL, "slot.context.execute_async_v2([], slot.stream.handle)")
    violations = _check(broken)
    assert [str(v).split(": ", 1)[1] for v in violations] == [
        "IExecutionContext.execute_async_v2 does not exist in TensorRT 10.3, 10.16, 11.1"
    ]


@pytest.mark.parametrize(
    ("gate", "ok"),
    [("self.api.major < 10", True), ("self.api.major <= 10", False), ("self.api.major >= 8", False)],
)
def test_version_gates_are_understood(gate: str, ok: bool) -> None:
    indent = " " * 8
    snippet = f"if {gate}:\n{indent}    slot.context.execute_async_v2([], slot.stream.handle)\n{indent}"
    assert V3_CALL in RUNNER
    patched = RUNNER.replace(f"if not {V3_CALL}:", snippet + f"if not {V3_CALL}:")
    assert patched != RUNNER
    assert (not _check(patched)) is ok


def test_flags_removed_in_11_need_a_gate() -> None:
    source = "def f(api, config):\n    config.set_flag(api.trt.BuilderFlag.FP16)\n"
    assert [v.missing_in for v in _check(source)] == [("11.1",)]
    early_return = (
        "def f(api, config):\n    if api.major >= 11:\n        return\n    config.set_flag(api.trt.BuilderFlag.FP16)\n"
    )
    assert _check(early_return) == []
    decorated = "@gate(max_major=10)\ndef f(api, config):\n    config.set_flag(api.trt.BuilderFlag.FP16)\n"
    assert _check(decorated) == []
    probed = "def f(error):\n    if hasattr(error, 'node_name'):\n        error.node_name()\n    error.node_name()\n"
    assert [v.use.line for v in _check(probed)] == [4]


def test_gate_decorator_refuses_other_versions(make_trt: object) -> None:
    from edged.backends.tensorrt.api import import_tensorrt
    from edged.backends.tensorrt.callbacks import make_progress_monitor
    from edged.errors import BackendError

    api = import_tensorrt(make_trt("8.6"))  # type: ignore[operator]
    with pytest.raises(BackendError, match=r"make_progress_monitor needs TensorRT 10..99, not 8.6.1"):
        make_progress_monitor(api, lambda fraction, phase: None)


def test_tables_cover_all_versions() -> None:
    assert set(load_tables()) == ALL_VERSIONS
    for version, table in load_tables().items():
        # 10.16 (the newest 10.x) has no table in shared/reference; it was read from NVIDIA's
        # binding sources at tag v10.16 the same way, and its source line says so.
        prefix = "NVIDIA/TensorRT v10.16 " if version == "10.16" else "shared/reference/tensorrt-api/"
        assert table["source"].startswith(prefix)
