"""Plan cache keys: a SHA-256 over a canonical document of everything that shapes a plan.

Backend and full version, the platform's identity, the model bytes (and calibration
data), every build option (with the preprocessing prefix folded into the plan, see
edged.backends.input_prefix) and edged's plan-format version. Anything not in the
document cannot make two different plans share a key, so a stale or foreign plan is
never looked up, let alone loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from edged.backends.base import BuildOptions
from edged.errors import PlanError

__all__ = ["PLAN_FORMAT_VERSION", "PlanKey", "plan_key", "sha256_file", "sha256_tree", "canonical_json"]

# Bump when the plan file or manifest layout changes: every older plan then misses.
PLAN_FORMAT_VERSION = 1
# BuildOptions.extra entries that locate caches or inputs rather than shape the plan;
# inputs are keyed by content instead (see ``inputs``).
_LOCATIONS = ("extra.state_dir", "extra.calibration_images")
_CHUNK = 1 << 20


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256_file(path: str, what: str = "model") -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the {what} file: {exc.strerror}") from exc
    return digest.hexdigest()


def sha256_tree(folder: str) -> str:
    """Content hash of a folder's files (names and bytes), e.g. calibration images."""
    digest = hashlib.sha256()
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise PlanError(f"{folder}: cannot read the folder: {exc.strerror}") from exc
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            digest.update(name.encode("utf-8") + b"\0" + sha256_file(path, "input").encode("ascii"))
    return digest.hexdigest()


@dataclass(frozen=True)
class PlanKey:
    digest: str
    name: str  # readable file stem: model.backendVERSION.device.precision.shorthash
    document: Mapping[str, Any]


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def plan_key(
    model_name: str,
    model_path: str,
    backend: str,
    backend_version: str,
    platform_identity: Mapping[str, Any],
    options: BuildOptions,
    inputs: Optional[Mapping[str, str]] = None,
    format_hashes: Optional[Mapping[str, str]] = None,
) -> PlanKey:
    """``inputs``: other files or folders the plan is built from (role -> path), keyed by content;
    ``format_hashes``: content hashes a model format adds (prototxt, builder source; role -> sha256)."""
    input_hashes: Dict[str, str] = {f"format.{k}": v for k, v in sorted((format_hashes or {}).items())}
    for role, path in sorted((inputs or {}).items()):
        input_hashes[role] = sha256_tree(path) if os.path.isdir(path) else sha256_file(path, role)
    calibration = options.extra.get("calibration_images")
    if calibration:
        input_hashes["calibration"] = sha256_tree(str(calibration))
    document = {
        "format": PLAN_FORMAT_VERSION,
        "backend": {"name": backend, "version": backend_version},
        "platform": dict(platform_identity),
        "model": {"sha256": sha256_file(model_path)},
        "inputs": input_hashes,
        "options": {k: v for k, v in options.as_key_document().items() if k not in _LOCATIONS},
    }
    digest = hashlib.sha256(canonical_json(document)).hexdigest()
    name = ".".join(
        [
            _safe(model_name),
            _safe(backend + backend_version),
            _safe(options.device),
            _safe(options.precision),
            digest[:12],
        ]
    )
    return PlanKey(digest, name, document)
