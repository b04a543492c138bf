"""Library version strings as comparable tuples."""

from __future__ import annotations

from typing import Tuple

__all__ = ["version_tuple"]


def version_tuple(version: str) -> Tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); '1.32.0rc1' -> (1, 32, 1): a piece's digits, 0 for a
    piece without any."""
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
