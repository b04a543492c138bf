"""docs/tensorrt-contracts.md against the code: every TensorRT name edged uses has a row, each
row's versions match NVIDIA's name tables, and every test the behaviour table cites exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Set, Tuple

from tests.backends.trt_surface import MAJORS, MODULE, collect, exists, load_tables

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "tensorrt-contracts.md").read_text(encoding="utf-8")
SCANNED = [
    *sorted((ROOT / "edged" / "backends" / "tensorrt").glob("*.py")),
    ROOT / "edged" / "platform" / "discover.py",
]


def _names_table() -> Dict[Tuple[str, str], Set[str]]:
    rows: Dict[Tuple[str, str], Set[str]] = {}
    section = DOC.split("## Names", 1)[1]
    for match in re.finditer(r"^\| `([^`]+)` \| ([^|]*) \|", section, re.M):
        owner, _, name = match.group(1).rpartition(".")
        key = (MODULE if owner == "tensorrt" else owner, name)
        rows[key] = set(match.group(2).split())
    return rows


def test_every_name_edged_uses_has_a_row() -> None:
    tables = load_tables()
    used = {(u.owner, u.name) for path in SCANNED for u in collect(path.read_text(encoding="utf-8"), path.name, tables)}
    assert len(used) > 80  # the scan sees the backend, or an empty pass would prove nothing
    missing = sorted(f"{owner}.{name}" for owner, name in used - set(_names_table()))
    assert not missing, "TensorRT names used but not in docs/tensorrt-contracts.md: " + ", ".join(missing)


def test_each_rows_versions_match_nvidias_tables() -> None:
    tables = load_tables()
    for (owner, name), versions in _names_table().items():
        have = {v for v in MAJORS if exists(tables[v], owner, name)}
        assert versions == have, f"{owner}.{name}: doc says {sorted(versions)}, tables say {sorted(have)}"


def test_every_cited_test_exists() -> None:
    behaviours = DOC.split("## Behaviours", 1)[1].split("## Names", 1)[0]
    cited = re.findall(r"`((?:backends|placement|formats)/[\w/]+\.py)(?:::(\w+))?`", behaviours)
    assert len(cited) > 20
    for path, test in cited:
        source = (ROOT / "tests" / path).read_text(encoding="utf-8")
        assert not test or f"def {test}(" in source, f"{path}::{test} is cited but does not exist"
    tests = [p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py")]
    for test in re.findall(r"`::(\w+)`", behaviours):  # "`::name`" continues the file cited just before
        assert any(f"def {test}(" in source for source in tests), f"{test} is cited but does not exist"
