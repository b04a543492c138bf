from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from edged.backends.base import BuildOptions
from edged.errors import PlanError
from edged.plans import PlanStore, plan_key


def _key(model: Path, name: str = "m", batch: int = 1):  # type: ignore[no-untyped-def]
    return plan_key(name, str(model), "onnxruntime", "1", {"kind": "cpu"}, BuildOptions(batch=batch))


def test_put_then_get_round_trips_and_writes_a_manifest(tmp_path: Path, demo_assets: Path) -> None:
    store = PlanStore(str(tmp_path / "plans"))
    key = _key(demo_assets / "demo-cnn.onnx")
    path = store.put(key, b"plan-bytes", {"build_seconds": 1.5})
    assert store.get(key) == b"plan-bytes"
    manifest = json.loads(Path(path + ".json").read_text())
    assert manifest["digest"] == key.digest and manifest["key"]["model"] == key.document["model"]
    assert manifest["build_seconds"] == 1.5 and manifest["size_bytes"] == 10
    assert Path(path).name.startswith("m.onnxruntime1.cpu.fp32.")


def test_a_flipped_byte_is_quarantined_with_the_reason(
    tmp_path: Path, demo_assets: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PlanStore(str(tmp_path / "plans"))
    key = _key(demo_assets / "demo-cnn.onnx")
    path = Path(store.put(key, b"\x00" * 64, {}))
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store.get(key) is None
    assert not path.exists()
    reasons = list((tmp_path / "plans" / "quarantine").glob("*.reason"))
    assert len(reasons) == 1 and "SHA-256" in reasons[0].read_text()
    assert [r.message for r in caplog.records if "quarantined" in r.message] == [
        f"plan {key.name} quarantined: SHA-256 of the plan does not match its manifest; it will be rebuilt"
    ]


def test_a_full_disk_leaves_no_partial_plan(tmp_path: Path, demo_assets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PlanStore(str(tmp_path / "plans"))
    key = _key(demo_assets / "demo-cnn.onnx")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("edged.plans.store.os.fsync", no_space)
    with pytest.raises(PlanError, match=r"\.plan: cannot write the plan cache: No space left on device"):
        store.put(key, b"x" * 4096, {})
    monkeypatch.undo()
    leftovers = [p.name for p in (tmp_path / "plans").iterdir() if p.is_file()]
    assert leftovers == [] and store.get(key) is None


def test_an_unusable_cache_directory_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PlanError, match=rf"plans.cache_dir: cannot create '{blocker}/plans'"):
        PlanStore(str(blocker / "plans"))


def test_lru_eviction_never_removes_a_plan_in_use(tmp_path: Path, demo_assets: Path) -> None:
    store = PlanStore(str(tmp_path / "plans"), max_count=1)
    model = demo_assets / "demo-cnn.onnx"
    first, second, third = (_key(model, batch=b) for b in (1, 2, 3))
    store.put(first, b"1", {})
    store.hold(first)
    store.put(second, b"2", {})
    assert {p.digest for p in store.entries()} == {first.digest, second.digest}  # first is in use
    store.release(first)
    os.utime(store.plan_path(first), (1, 1))  # first is the least recently used
    store.put(third, b"3", {})
    assert {p.digest for p in store.entries()} == {third.digest}


def test_prune_removes_quarantine_and_leftovers(tmp_path: Path, demo_assets: Path) -> None:
    store = PlanStore(str(tmp_path / "plans"))
    key = _key(demo_assets / "demo-cnn.onnx")
    store.put(key, b"keep", {})
    store.quarantine("gone", "test")
    (tmp_path / "plans" / ".tmp-123-x.plan").write_bytes(b"half")
    (tmp_path / "plans" / "orphan.plan").write_bytes(b"no manifest")
    removed = store.prune()
    assert ".tmp-123-x.plan" in removed and "orphan.plan" in removed
    assert list((tmp_path / "plans" / "quarantine").iterdir()) == []
    assert store.get(key) == b"keep"
