"""Static check of every TensorRT name the backend uses against NVIDIA's per-version tables.

TensorRT objects are recognised by the names the backend gives them (``config``,
``engine``, ``context``... and ``trt`` for the module; see RECEIVERS), calls with a known
result type (``network.get_layer(i)`` is an ILayer) and ``trt.Class(...)``. A use counts
for the versions its enclosing gates allow:
- ``if <x>.major OP N:`` (and ``and`` chains) narrows its body, ``else`` the inverse;
- an ``if`` whose body ends in return/raise narrows what follows by the negated test
  (single comparisons and ``or`` chains);
- ``@gate(min_major=, max_major=)`` on a function narrows its body;
- ``hasattr(x, "name")`` in a test makes ``name`` optional in that body;
- ``getattr(x, "NAME", default)`` is a probe: its string is not an attribute use.
"""

from __future__ import annotations

import ast
import json
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

API_DIR = Path(__file__).resolve().parents[1] / "trt_double" / "api"
MAJORS = {"8.5": 8, "8.6": 8, "10.3": 10, "10.16": 10, "11.1": 11}
ALL_VERSIONS = frozenset(MAJORS)

RECEIVERS = {
    "builder": "Builder", "config": "IBuilderConfig", "network": "INetworkDefinition", "parser": "OnnxParser",
    "error": "ParserError", "runtime": "Runtime", "engine": "ICudaEngine", "context": "IExecutionContext",
    "inspector": "EngineInspector", "layer": "ILayer", "tensor": "ITensor", "profile": "IOptimizationProfile",
}  # fmt: skip
RETURNS = {
    ("Builder", "create_network"): "INetworkDefinition", ("Builder", "create_builder_config"): "IBuilderConfig",
    ("Builder", "create_optimization_profile"): "IOptimizationProfile", ("INetworkDefinition", "get_layer"): "ILayer",
    ("INetworkDefinition", "get_input"): "ITensor", ("OnnxParser", "get_error"): "ParserError",
    ("IBuilderConfig", "get_timing_cache"): "ITimingCache", ("IBuilderConfig", "create_timing_cache"): "ITimingCache",
    ("ICudaEngine", "create_execution_context"): "IExecutionContext",
    ("ICudaEngine", "create_engine_inspector"): "EngineInspector",
    ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
}  # fmt: skip
_OPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}  # fmt: skip
MODULE = "<module>"


@dataclass(frozen=True)
class Use:
    path: str
    line: int
    owner: str  # a class, an enum, or MODULE
    name: str
    versions: FrozenSet[str]


@dataclass(frozen=True)
class Violation:
    use: Use
    missing_in: Tuple[str, ...]

    def __str__(self) -> str:
        where = f"{self.use.path}:{self.use.line}"
        owner = "tensorrt" if self.use.owner == MODULE else self.use.owner
        return f"{where}: {owner}.{self.use.name} does not exist in TensorRT {', '.join(self.missing_in)}"


def load_tables() -> Dict[str, Dict[str, Any]]:
    return {v: json.loads((API_DIR / f"{v}.json").read_text(encoding="utf-8")) for v in MAJORS}


def _gate_of(test: ast.expr) -> Optional[FrozenSet[str]]:
    """Versions a ``x.major OP N`` comparison allows; None if it is no gate."""
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.left, ast.Attribute)
        and test.left.attr == "major"
        and isinstance(test.comparators[0], ast.Constant)
        and type(test.ops[0]) in _OPS
    ):
        op, n = _OPS[type(test.ops[0])], test.comparators[0].value
        return frozenset(v for v, major in MAJORS.items() if op(major, n))
    return None


def _narrow(test: ast.expr) -> FrozenSet[str]:
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        allowed = ALL_VERSIONS
        for value in test.values:
            allowed &= _narrow(value)
        return allowed
    return _gate_of(test) or ALL_VERSIONS


def _negate(test: ast.expr) -> FrozenSet[str]:
    values = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or) else [test]
    allowed = ALL_VERSIONS
    for value in values:
        gate = _gate_of(value)
        if gate is not None:
            allowed &= ALL_VERSIONS - gate
    return allowed


def _hasattrs(test: ast.expr) -> Set[str]:
    return {
        node.args[1].value
        for node in ast.walk(test)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "hasattr"
        and len(node.args) == 2
        and isinstance(node.args[1], ast.Constant)
    }


class _Collector:
    def __init__(self, path: str, tables: Dict[str, Dict[str, Any]]) -> None:
        self.path = path
        self.uses: List[Use] = []

    def type_of(self, node: ast.expr) -> Optional[str]:
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = (node.id if isinstance(node, ast.Name) else node.attr).lstrip("_")
            if name == "trt":
                return MODULE
            if name in RECEIVERS:
                return RECEIVERS[name]
            if isinstance(node, ast.Attribute) and self.type_of(node.value) == MODULE:
                return f"class:{node.attr}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = self.type_of(node.func.value)
            if owner == MODULE:
                return node.func.attr  # trt.Builder(...) is a Builder
            if owner is not None:
                return RETURNS.get((owner, node.func.attr))
        return None

    def expr(self, node: ast.AST, versions: FrozenSet[str], optional: Set[str]) -> None:
        for sub in ast.walk(node):
            if not isinstance(sub, ast.Attribute) or sub.attr in optional:
                continue
            owner = self.type_of(sub.value)
            if owner is None:
                continue
            owner = owner[6:] if owner.startswith("class:") else owner
            self.uses.append(Use(self.path, sub.lineno, owner, sub.attr, versions))

    def block(self, stmts: Iterable[ast.stmt], versions: FrozenSet[str], optional: Set[str]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                self.expr(stmt.test, versions, optional)
                self.block(stmt.body, versions & _narrow(stmt.test), optional | _hasattrs(stmt.test))
                self.block(stmt.orelse, versions & _negate(stmt.test), optional)
                if stmt.body and isinstance(stmt.body[-1], (ast.Return, ast.Raise)):
                    versions = versions & _negate(stmt.test)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = versions
                for deco in stmt.decorator_list:
                    if isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "gate":
                        kw = {k.arg: k.value.value for k in deco.keywords if isinstance(k.value, ast.Constant)}
                        lo, hi = kw.get("min_major", 0), kw.get("max_major", 99)
                        inner = inner & frozenset(v for v, m in MAJORS.items() if lo <= m <= hi)
                if isinstance(stmt, ast.ClassDef):
                    for base in stmt.bases:
                        self.expr(base, inner, optional)
                self.block(stmt.body, inner, optional)
            else:
                for child in ast.iter_child_nodes(stmt):
                    if isinstance(child, ast.stmt):
                        self.block([child], versions, optional)
                    else:
                        self.expr(child, versions, optional)


def collect(source: str, path: str, tables: Dict[str, Dict[str, Any]]) -> List[Use]:
    collector = _Collector(path, tables)
    collector.block(ast.parse(source).body, ALL_VERSIONS, set())
    return collector.uses


def exists(table: Dict[str, Any], owner: str, name: str) -> bool:
    if owner == MODULE:
        return (
            name in table["classes"]
            or name in table["enums"]
            or name in table["module_functions"]
            or name in table["module_attributes"]
            or name == "__version__"
        )
    if owner in table["enums"]:
        return name in table["enums"][owner]
    if f"{owner}.{name}" in table["enums"]:
        return True  # nested enum such as ILogger.Severity
    return name in table["classes"].get(owner, ())


def check(uses: Iterable[Use], tables: Dict[str, Dict[str, Any]]) -> List[Violation]:
    violations = []
    for use in uses:
        ordered = sorted(use.versions, key=lambda v: tuple(int(p) for p in v.split(".")))
        missing = tuple(v for v in ordered if not exists(tables[v], use.owner, use.name))
        if missing:
            violations.append(Violation(use, missing))
    return violations


def check_package(root: Path) -> Tuple[List[Use], List[Violation]]:
    tables = load_tables()
    uses: List[Use] = []
    for path in sorted(root.glob("*.py")):
        uses += collect(path.read_text(encoding="utf-8"), path.name, tables)
    return uses, check(uses, tables)
