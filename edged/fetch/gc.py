"""Garbage collection of the content-addressed store.

A store file (``<sha256>``, or an unpacked ``<sha256>.d`` folder) that no config refers to
(the config in force, the persisted push, the local file) is removed once it has not been
used for the grace period; its time is refreshed each time a model is loaded from it
(fetcher.py), so the grace counts from its last use. Partial downloads are kept as long
(a later push may resume them), except those a download is writing now.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from typing import Any, Collection, Iterable, List, Mapping, Optional, Set

from edged.config.sources import ARCHIVE_SUFFIX, document_sources
from edged.fetch.fetcher import PARTIAL_DIR

__all__ = ["collect", "referenced_hashes"]

log = logging.getLogger(__name__)

_STORE_NAME = re.compile(r"^([0-9a-f]{64})(" + re.escape(ARCHIVE_SUFFIX) + r")?$")


def referenced_hashes(documents: Iterable[Optional[Mapping[str, Any]]]) -> Set[str]:
    return {remote.sha256 for doc in documents if doc for _, _, remote in document_sources(doc)}


def _age_s(path: str, now: float) -> float:
    try:
        return now - os.lstat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.unlink(path)


def collect(
    store: str,
    referenced: Collection[str],
    grace_s: float,
    partial_grace_s: Optional[float] = None,
    active: Collection[str] = (),
    now: Optional[float] = None,
) -> List[str]:
    """Remove what the module docstring says; returns the paths removed. Names that are
    not the store's own (no hash name) are left alone."""
    now = time.time() if now is None else now
    partial_grace_s = grace_s if partial_grace_s is None else partial_grace_s
    removed: List[str] = []
    try:
        names = sorted(os.listdir(store))
    except FileNotFoundError:
        return removed
    for name in names:
        match = _STORE_NAME.match(name)
        path = os.path.join(store, name)
        if match and match.group(1) not in referenced and _age_s(path, now) >= grace_s:
            _remove(path)
            removed.append(path)
    partial_dir = os.path.join(store, PARTIAL_DIR)
    for name in sorted(os.listdir(partial_dir)) if os.path.isdir(partial_dir) else []:
        path = os.path.join(partial_dir, name)
        if name[:64] not in active and _age_s(path, now) >= partial_grace_s:
            _remove(path)
            removed.append(path)
    for path in removed:
        log.info("store: removed %s (no config refers to it)", path)
    return removed
