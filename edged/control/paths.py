"""Confinement of pushed file paths to configured directories."""

from __future__ import annotations

import os
from typing import Optional, Sequence

__all__ = ["confinement_problem"]


def confinement_problem(path: str, dirs: Sequence[str], setting: str) -> Optional[str]:
    """Why ``path`` may not be used, or None when it resolves (symlinks followed) inside
    one of ``dirs``. ``..`` is refused outright rather than normalised, so a path means
    what it says."""
    if "\x00" in path:
        return "contains a NUL character"
    if not os.path.isabs(path):
        return "must be an absolute path"
    if ".." in path.split("/"):
        return "'..' is not allowed"
    if not dirs:
        return f"{setting} is empty: pushes may not name files"
    real = os.path.realpath(path)
    for folder in dirs:
        root = os.path.realpath(folder)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return None
    shown = f" (resolves to {real})" if real != os.path.normpath(path) else ""
    return f"is outside {setting} {list(dirs)}{shown}"
