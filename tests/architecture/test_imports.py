"""The dependency rules of docs/architecture.md, checked on the source."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Set

import pytest

from tests.architecture.imports import cycles, import_graph

EDGED = Path(__file__).resolve().parents[2] / "edged"

# The centre and everything above it: lower layers must not reach up into these.
ABOVE_THE_LOWER_LAYERS = (
    "edged.cli",
    "edged.daemon",
    "edged.model_set",
    "edged.model_loading",
    "edged.model_state",
    "edged.status",
    "edged.service_hooks",
    "edged.control",
    "edged.telemetry",
    "edged.plans",
    "edged.placement",
    "edged.accuracy",
    "edged.fetch",
    "edged.ctl",
    "edged.bench",
)
LOWER_LAYERS = ("edged.systemd", "edged.mqtt", "edged.platform", "edged.backends", "edged.cuda", "edged.errors")


@pytest.fixture(scope="module")
def graph() -> Dict[str, Set[str]]:
    return import_graph(EDGED)


def _in(module: str, packages: tuple) -> bool:  # type: ignore[type-arg]
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_edged_has_no_import_cycles(graph: Dict[str, Set[str]]) -> None:
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    (package / "d.py").write_text("import pkg.a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_only_the_cli_imports_the_daemon(graph: Dict[str, Set[str]]) -> None:
    importers = sorted(m for m, deps in graph.items() if "edged.daemon" in deps)
    assert importers == ["edged.cli"]


def test_lower_layers_import_nothing_above_them(graph: Dict[str, Set[str]]) -> None:
    upward = {
        module: sorted(d for d in deps if _in(d, ABOVE_THE_LOWER_LAYERS))
        for module, deps in graph.items()
        if _in(module, LOWER_LAYERS)
    }
    assert {m: d for m, d in upward.items() if d} == {}


def test_readers_of_the_running_state_do_not_import_its_owner(graph: Dict[str, Set[str]]) -> None:
    readers = ["edged.status", "edged.service_hooks", "edged.telemetry.service", "edged.control.plane"]
    assert {r: sorted(graph[r] & {"edged.model_set", "edged.daemon"}) for r in readers} == {r: [] for r in readers}
