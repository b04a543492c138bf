"""``edged plan prune`` removes downloaded models that no config refers to."""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from edged.cli import main
from edged.control.store import ConfigStore
from edged.fetch.fetcher import PARTIAL_DIR


def test_plan_prune_removes_unreferenced_store_files(tmp_path: Path, demo_assets: Path) -> None:
    models, state = tmp_path / "models", tmp_path / "state"
    store = models / "store"
    (store / PARTIAL_DIR).mkdir(parents=True)
    in_file, in_push, unused, old_part, new_part = ("a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64)

    def entry(name: str, digest: str) -> dict:  # type: ignore[type-arg]
        return {"name": name, "path": {"url": f"https://models.example/{name}.onnx", "sha256": digest}}

    doc = {
        "version": 1,
        "device": {"id": "node-1"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "control": {"state_dir": str(state), "model_dirs": [str(models)]},
        "models": [entry("m", in_file)],
    }
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump(doc))
    ConfigStore(str(state)).save(dict(doc, version=2, models=[entry("m", in_push)]), 2, "digest")
    for name in (in_file, in_push, unused):
        (store / name).write_bytes(b"x")
    (store / (unused + ".d")).mkdir()
    for name in (old_part, new_part):
        (store / PARTIAL_DIR / name).write_bytes(b"x")
    past = time.time() - 7200
    os.utime(store / PARTIAL_DIR / old_part, (past, past))
    assert main(["plan", "--config", str(config), "prune"]) == 0
    assert sorted(p.name for p in store.iterdir()) == sorted([PARTIAL_DIR, in_file, in_push])
    assert [p.name for p in (store / PARTIAL_DIR).iterdir()] == [new_part]


def test_a_model_still_to_download_counts_its_declared_size_in_the_memory_estimate(tmp_path: Path) -> None:
    from edged.config import parse_config
    from edged.config.limits import model_memory_bytes

    def model(size: int) -> dict:  # type: ignore[type-arg]
        path = {"url": "https://models.example/m.onnx", "sha256": "a" * 64, "size": size}
        return {"name": "m", "path": path, "source": {"type": "synthetic", "size": [8, 8]}}

    doc = {"device": {"id": "n"}, "control": {"model_dirs": [str(tmp_path)]}}
    small = model_memory_bytes(parse_config(dict(doc, models=[model(1)])).models[0])
    large = model_memory_bytes(parse_config(dict(doc, models=[model(1 << 30)])).models[0])
    assert large - small == 2 * ((1 << 30) - 1)
