"""Per-format content hashes for plan keys.

The model's main file (``path``) is hashed by the plan key itself; these are the other
inputs a format reads: the Caffe prototxt, and for a network builder its function's
source and module file. Paths never enter a key, contents do, so moving files keeps
a plan and editing one rebuilds it.
"""

from __future__ import annotations

from typing import Dict

from edged.formats.builder import builder_hashes
from edged.formats.spec import ModelFormat

__all__ = ["format_input_hashes"]


def format_input_hashes(fmt: ModelFormat) -> Dict[str, str]:
    """Role -> SHA-256 of every input the format reads besides the model's main file."""
    # Imported here: edged.plans imports this module while it initialises.
    from edged.plans.key import sha256_file

    if fmt.type == "caffe" and fmt.prototxt:
        return {"prototxt": sha256_file(fmt.prototxt, "prototxt")}
    if fmt.type == "network-builder" and fmt.builder:
        return builder_hashes(fmt.builder, fmt.python_path)
    return {}
