"""Validation of a config push, before anything changes.

A push is a JSON object::

    {"version": 7, "patch": {...}}            # RFC 7396 merge patch against the current config
    {"version": 7, "config": {...}}           # or a full config
    optional: "id" (echoed in the result), "target" (device id or group the push was meant
    for), "signature" (Ed25519, base64, over the canonical payload; see canonical.py)

Checks, in order: size, JSON (with every number finite and within 64 bits), envelope,
signature, version (stale and replayed versions are refused), local-only keys (compared
with the local file's values the way the file itself is read: defaults filled, relative
paths resolved against its folder), the shipped schema and limits, path confinement per
field (confine.py), the predicted memory of the models.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from edged.config.limits import OutOfRange, numeric_problems
from edged.config.loader import check_document, check_memory, resolve_relative
from edged.config.model import Config, build_config
from edged.config.schema import fill_defaults
from edged.control.canonical import SignatureError, canonical_bytes, verify_signature
from edged.control.confine import path_problems
from edged.control.merge_patch import merge_patch
from edged.control.settings import LOCAL_ONLY, ControlSettings
from edged.errors import ConfigError, EdgedError

__all__ = ["Push", "PushRejected", "DuplicatePush", "Screened", "parse_push", "screen_push", "decode_json"]

_ENVELOPE_KEYS = ("version", "config", "patch", "id", "target", "signature")
_MAX_DEPTH = 64
_MISSING = object()
_INT64_DIGITS = 19


class PushRejected(EdgedError):
    """A push failed validation; ``problems`` name each cause with its key path and
    ``reason`` the counter it is accounted under (admission.py)."""

    def __init__(
        self,
        problems: Sequence[str],
        request_id: Optional[str] = None,
        version: Optional[int] = None,
        reason: str = "invalid_config",
    ):
        self.problems = list(problems)
        self.request_id = request_id
        self.version = version
        self.reason = reason
        super().__init__("; ".join(self.problems))


class DuplicatePush(EdgedError):
    """The push that is already in force, delivered again (an MQTT QoS 1 redelivery)."""

    def __init__(self, version: int, request_id: Optional[str]) -> None:
        self.version = version
        self.request_id = request_id
        super().__init__(f"version {version} is already applied")


@dataclass(frozen=True)
class Push:
    version: int
    document: Dict[str, Any]
    request_id: Optional[str]
    digest: str
    # The document built, once: validating and filling a document costs a device tens of
    # milliseconds of CPU (measured by tools/bench_fleet.py), paid once per push.
    config: Config


def _parse_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else OutOfRange(text)


def _parse_int(text: str) -> Any:
    # Longer digit strings are never converted: int() of thousands of digits costs time,
    # and beyond 4,300 digits Python refuses it (sys.set_int_max_str_digits).
    return OutOfRange(text) if len(text.lstrip("-")) > _INT64_DIGITS else int(text)


def _depth(node: Any, limit: int) -> int:
    stack = [(node, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def decode_json(raw: bytes, max_bytes: int) -> Any:
    if len(raw) > max_bytes:
        raise PushRejected(
            [f"payload: {len(raw)} bytes exceeds control.max_payload_bytes ({max_bytes})"], reason="too_large"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PushRejected([f"payload: not UTF-8 ({exc.reason} at byte {exc.start})"], reason="invalid_json") from None
    try:
        doc = json.loads(text, parse_float=_parse_float, parse_int=_parse_int, parse_constant=OutOfRange)
    except RecursionError:
        raise PushRejected([f"payload: nested deeper than {_MAX_DEPTH} levels"], reason="invalid_json") from None
    except ValueError as exc:
        raise PushRejected([f"payload: invalid JSON: {exc}"], reason="invalid_json") from None
    if _depth(doc, _MAX_DEPTH) > _MAX_DEPTH:
        raise PushRejected([f"payload: nested deeper than {_MAX_DEPTH} levels"], reason="invalid_json")
    problems = numeric_problems(doc)
    if problems:
        request_id = doc.get("id") if isinstance(doc, dict) and isinstance(doc.get("id"), str) else None
        raise PushRejected(problems, request_id, reason="invalid_json")
    return doc


def _envelope(doc: Any) -> Tuple[Optional[str], Optional[int], List[str]]:
    if not isinstance(doc, dict):
        return None, None, ["payload: expected a JSON object with version and config or patch"]
    problems = [
        f"{key}: unknown key (expected {', '.join(_ENVELOPE_KEYS)})" for key in doc if key not in _ENVELOPE_KEYS
    ]
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        problems.append("id: expected a string")
        request_id = None
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        problems.append("version: required, an integer >= 0")
        version = None
    if ("config" in doc) == ("patch" in doc):
        problems.append("config/patch: give exactly one of them")
    else:
        key = "config" if "config" in doc else "patch"
        if not isinstance(doc[key], dict):
            problems.append(f"{key}: expected an object")
    target = doc.get("target")
    if target is not None and not isinstance(target, str):
        problems.append("target: expected a string")
    return request_id, version, problems


def _get(doc: Mapping[str, Any], path: Tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(doc: Dict[str, Any], path: Tuple[str, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return  # the schema check reports the malformed parent
        node = child
    if value is _MISSING:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def _as_read_from_file(proposed: Dict[str, Any], local_dir: Optional[str]) -> Dict[str, Any]:
    """``proposed`` as it would be in force had the local file said it: relative paths
    resolved against the file's folder, schema defaults filled in."""
    return fill_defaults(resolve_relative(proposed, Path(local_dir) if local_dir else None))


def _local_only(proposed: Dict[str, Any], current: Mapping[str, Any], local_dir: Optional[str]) -> List[str]:
    """Refuse changes to local-only keys, then put the local values in place. A push that
    repeats the local file's sections as written there (relative paths, defaults left
    out) changes nothing: both sides are compared as the file is read."""
    normalised = _as_read_from_file(proposed, local_dir)
    problems = []
    for path in LOCAL_ONLY:
        mine, theirs = _get(current, path), _get(proposed, path)
        if theirs is not _MISSING and theirs != mine and _get(normalised, path) != mine:
            problems.append(f"{'.'.join(path)}: set only in the local config file; a push may not change it")
        _set(proposed, path, mine)
    return problems


@dataclass(frozen=True)
class Screened:
    """A push that passed the cheap checks: size, JSON, envelope, signature, target, version."""

    doc: Dict[str, Any]
    version: int
    request_id: Optional[str]


def screen_push(
    raw: bytes,
    current_version: int,
    settings: ControlSettings,
    public_keys: Sequence[Any] = (),
    applied_digest: Optional[str] = None,
    targets: Sequence[str] = (),
) -> Screened:
    """The checks that need no config work, cheap enough to run on every message before it
    is queued. Raises PushRejected (with its reason) or DuplicatePush."""
    doc = decode_json(raw, settings.max_payload_bytes)
    request_id, version, problems = _envelope(doc)
    if problems:
        raise PushRejected(problems, request_id, version, reason="invalid_envelope")
    assert version is not None
    stale = PushRejected(
        [f"version: {version} is not newer than the applied version {current_version} (stale or replayed)"],
        request_id,
        version,
        reason="stale_version",
    )
    if version < current_version:
        raise stale  # before the signature: under a flood of old pushes, the cheapest refusal
    if public_keys:
        try:
            verify_signature(doc, public_keys)
        except SignatureError as exc:
            raise PushRejected([str(exc)], request_id, version, reason="bad_signature") from None
    if version == current_version:
        if _digest(doc) == applied_digest:
            raise DuplicatePush(version, request_id)
        raise stale
    target = doc.get("target")
    if target is not None and targets and target not in targets:
        raise PushRejected(
            [f"target: {target!r} is not this device or one of its groups"], request_id, version, reason="wrong_target"
        )
    return Screened(doc, version, request_id)


def _digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(doc)).hexdigest()


def parse_push(
    raw: bytes,
    current: Config,
    settings: ControlSettings,
    public_keys: Sequence[Any] = (),
    applied_digest: Optional[str] = None,
    targets: Sequence[str] = (),
    local_dir: Optional[str] = None,
) -> Push:
    """Validate ``raw`` against the config in force; return the complete proposed config
    document. ``local_dir``: the folder of the local config file, against which it resolves
    relative paths. Raises PushRejected naming every problem found, or DuplicatePush."""
    screened = screen_push(raw, current.version, settings, public_keys, applied_digest, targets)
    doc, version, request_id = screened.doc, screened.version, screened.request_id
    digest = _digest(doc)
    problems: List[str] = []
    if "config" in doc:
        proposed: Dict[str, Any] = json.loads(json.dumps(doc["config"]))
        if proposed.get("version", version) != version:
            problems.append(f"config.version: {proposed['version']!r} differs from the push version {version}")
    else:
        proposed = merge_patch(dict(current.document), doc["patch"])
    proposed["version"] = version
    problems += _local_only(proposed, current.document, local_dir)
    problems += check_document(proposed)
    if problems:
        raise PushRejected(problems, request_id, version)
    filled = fill_defaults(proposed)
    problems = path_problems(filled, current.document, settings)
    if problems:
        raise PushRejected(problems, request_id, version)
    try:
        config = build_config(filled)
        check_memory(config)
    except ConfigError as exc:
        raise PushRejected(exc.problems, request_id, version) from None
    return Push(version=version, document=filled, request_id=request_id, digest=digest, config=config)
