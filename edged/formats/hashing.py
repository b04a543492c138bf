"""Per-format content hashes for plan keys.

The model's main file (``path``) is hashed by the plan key itself; these are the other
inputs a format reads: the Caffe prototxt, and for a network builder its function's
source and module file. Paths never enter a key, contents do, so moving files keeps
a plan and editing one rebuilds it.
"""

from __future__ import annotations

import hashlib
from typing import Dict

from edged.errors import PlanError
from edged.formats.builder import builder_hashes
from edged.formats.spec import ModelFormat

__all__ = ["format_input_hashes", "sha256_of_file"]

_CHUNK = 1 << 20


def sha256_of_file(path: str, role: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the {role} file: {exc.strerror}") from exc
    return digest.hexdigest()


def format_input_hashes(fmt: ModelFormat) -> Dict[str, str]:
    """Role -> SHA-256 of every input the format reads besides the model's main file."""
    if fmt.type == "caffe" and fmt.prototxt:
        return {"prototxt": sha256_of_file(fmt.prototxt, "prototxt")}
    if fmt.type == "network-builder" and fmt.builder:
        return builder_hashes(fmt.builder, fmt.python_path)
    return {}
