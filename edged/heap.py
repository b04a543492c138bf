"""Giving the heap memory freed after a model loads back to the kernel.

Loading a model is a large transient: ONNX Runtime parses the whole model and copies its
weights; a build also optimises the graph. glibc keeps what was freed in its heaps for
reuse, below whatever small allocation came last, so it stays in the daemon's resident
memory for the rest of its life unless asked back with malloc_trim(3). Measured with a
ResNet-50-sized model: 252 MB resident after one load, 109 MB after the trim.
"""

from __future__ import annotations

import ctypes
import logging
from functools import lru_cache
from typing import Any, Optional

__all__ = ["release_free_heap"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def _malloc_trim() -> Optional[Any]:
    try:
        # The process's own symbols: libc is loaded already, and no ldconfig runs to find it.
        return getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only: musl has none
    except OSError as exc:
        log.debug("no C library to trim the heap with: %s", exc)
        return None


def release_free_heap() -> bool:
    """Return free heap pages to the kernel; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
