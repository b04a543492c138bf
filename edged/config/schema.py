"""The shipped JSON Schema: loading, validation with key-path messages, and defaults."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Union

__all__ = ["load_schema", "validate", "fill_defaults", "format_path"]

_SCHEMA_RESOURCE = "schema.json"


@lru_cache(maxsize=None)
def _schema_text() -> str:
    from pathlib import Path

    return (Path(__file__).with_name(_SCHEMA_RESOURCE)).read_text(encoding="utf-8")


def load_schema() -> Dict[str, Any]:
    """A fresh copy of the configuration schema shipped in the package."""
    return json.loads(_schema_text())  # type: ignore[no-any-return]


@lru_cache(maxsize=None)
def _validator() -> Any:
    import jsonschema

    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def format_path(path: Iterable[Union[str, int]]) -> str:
    """``["models", 1, "precision"]`` -> ``models[1].precision``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _join(path: str, key: str) -> str:
    return key if path == "(top level)" else f"{path}.{key}"


def _messages(error: Any) -> List[str]:
    path = format_path(error.absolute_path)
    validator = error.validator
    if validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return [f"{path}: {error.instance!r} is not one of {choices}"]
    if validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)
        return [f"{_join(path, k)}: unknown key" for k in unknown]
    if validator == "oneOf" and isinstance(error.instance, dict):
        # A path or a file to download: an object can only have meant the download, so
        # say what is wrong with it rather than that it matches neither.
        inner = [e for e in error.context if e.validator != "type" or e.relative_path]
        if inner:
            return [m for e in inner for m in _messages(e)]
    if validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return [f"{_join(path, k)}: required key is missing" for k in missing]
    if validator == "type":
        return [f"{path}: {error.instance!r} is not of type {error.validator_value}"]
    if validator == "pattern":
        return [f"{path}: {error.instance!r} does not match {error.validator_value}"]
    if validator == "dependencies":
        return [f"{_join(path, key)}: needs the {', '.join(needs)} section" for key, needs in _unmet(error)]
    bound = _bound_message(validator, error.instance, error.validator_value)
    return [f"{path}: {bound or error.message}"]


# edged's own words for size and range limits: jsonschema reworded them in 4.21, and a
# device runs Debian's jsonschema (4.10 on bookworm) while a venv may hold a newer one, so
# the operator would otherwise read different messages for the same mistake.
_BOUND_WORDS = {
    "minItems": "{value} has {size} items, fewer than the minimum of {limit}",
    "maxItems": "{size} items are more than the maximum of {limit}",
    "minLength": "{value} is shorter than {limit} characters",
    "maxLength": "{value} is longer than {limit} characters",
    "minimum": "{value} is less than the minimum of {limit}",
    "maximum": "{value} is greater than the maximum of {limit}",
    "exclusiveMinimum": "{value} is not greater than {limit}",
    "exclusiveMaximum": "{value} is not less than {limit}",
    "const": "{value} should be {limit!r}",
}


def _bound_message(validator: str, instance: Any, limit: Any) -> str:
    """The words for a size or range error, or "" for other validators."""
    words = _BOUND_WORDS.get(validator)
    if words is None:
        return ""
    sized = validator in ("minItems", "maxItems", "minLength", "maxLength")
    if sized and limit == 1 and validator.startswith("min") and len(instance) == 0:
        return f"{instance!r} should be non-empty"
    return words.format(value=repr(instance), size=len(instance) if sized else 0, limit=limit)


def _unmet(error: Any) -> List[Any]:
    """The keys present whose required companions are missing (draft-07 ``dependencies``)."""
    return [
        (key, [n for n in needs if n not in error.instance])
        for key, needs in error.validator_value.items()
        if key in error.instance and isinstance(needs, list) and any(n not in error.instance for n in needs)
    ]


def validate(doc: Any) -> List[str]:
    """Every schema violation in ``doc`` as ``key.path: reason``, in document order."""
    problems: List[str] = []
    errors = sorted(_validator().iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        for message in _messages(error):
            if message not in problems:
                problems.append(message)
    return problems


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        node: Any = root
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        merged = {k: v for k, v in schema.items() if k != "$ref"}
        merged.update(node)
        schema = merged
    return schema


@lru_cache(maxsize=None)
def _shared_schema() -> Dict[str, Any]:
    """One schema for fill_defaults, which only reads it (defaults are copied out): a push
    fills a document on every device, and parsing the schema each time cost more than
    the filling itself (tools/bench_fleet.py)."""
    return load_schema()


_CONDITIONS: Dict[int, Any] = {}


def _condition(cond: Mapping[str, Any]) -> Any:
    """The validator of an ``if`` clause of the shared schema, built once."""
    import jsonschema

    validator = _CONDITIONS.get(id(cond))
    if validator is None:
        validator = _CONDITIONS[id(cond)] = jsonschema.Draft7Validator(cond)
    return validator


def _fill(node: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> None:
    schema = _resolve(schema, root)
    if isinstance(node, dict):
        branches: List[Mapping[str, Any]] = [schema]
        for clause in schema.get("allOf", ()):
            cond = clause.get("if")
            if cond is not None and _condition(cond).is_valid(node):
                branches.append(_resolve(clause.get("then", {}), root))
        for branch in branches:
            for key, sub in branch.get("properties", {}).items():
                if not isinstance(sub, dict):
                    continue
                sub = _resolve(sub, root)
                if key not in node and "default" in sub:
                    node[key] = copy.deepcopy(sub["default"])
                if key in node:
                    _fill(node[key], sub, root)
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        for item in node:
            _fill(item, schema["items"], root)


def fill_defaults(doc: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of a valid ``doc`` with every schema default filled in."""
    schema = _shared_schema()
    filled = copy.deepcopy(doc)
    _fill(filled, schema, schema)
    models = filled.get("models")
    for model in models if isinstance(models, list) else []:
        # A model that lists its sources takes no default single source beside them.
        if isinstance(model, dict) and "sources" in model:
            model.pop("source", None)
    return filled


def unique_names(models: Sequence[Mapping[str, Any]]) -> List[str]:
    seen: Dict[str, int] = {}
    problems = []
    for index, model in enumerate(models):
        name = model.get("name") if isinstance(model, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(f"models[{index}].name: {name!r} is already used by models[{seen[name]}]")
        else:
            seen[name] = index
    return problems
