"""Reading small sysfs/procfs files under a root path."""

from __future__ import annotations

from typing import Optional

__all__ = ["read_text"]


def read_text(path: str) -> Optional[str]:
    """The stripped ASCII content of ``path``, or None when it is absent or unreadable."""
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
