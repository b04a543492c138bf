"""The on-disk plan cache: atomic writes, verified reads, quarantine, locks, LRU eviction.

Layout under the cache directory:
    <name>.plan          plan bytes (a TensorRT engine, an optimised ONNX model)
    <name>.plan.json     manifest: the whole key document, the plan's SHA-256, build facts
    quarantine/          plans that failed verification or loading, kept for diagnosis
    .locks/<digest>.build   held exclusively while a plan is built (one builder per plan)
    .locks/<digest>.use     held shared while a process has the plan loaded
A plan counts only once its manifest exists and names the plan's SHA-256, and both are
written to a temporary file, fsynced and renamed; so a crash or ``kill -9`` at any point
leaves either the whole plan or nothing that loads.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import IO, Any, Dict, Iterator, List, Optional

from edged.errors import PlanError
from edged.plans.key import PlanKey

__all__ = ["PlanStore", "StoredPlan"]

log = logging.getLogger(__name__)

_PLAN = ".plan"
_MANIFEST = ".plan.json"
_FAILED = ".failed.json"
_TMP = ".tmp-"


@dataclass(frozen=True)
class StoredPlan:
    name: str
    digest: str
    path: str
    size_bytes: int
    last_used: float
    manifest: Dict[str, Any]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


class PlanStore:
    def __init__(self, root: str, max_bytes: int = 0, max_count: int = 0) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_count = max_count
        self._use_handles: Dict[str, IO[bytes]] = {}
        try:
            os.makedirs(os.path.join(root, ".locks"), exist_ok=True)
            os.makedirs(os.path.join(root, "quarantine"), exist_ok=True)
        except OSError as exc:
            raise PlanError(f"plans.cache_dir: cannot create {root!r}: {exc.strerror}") from exc
        if not os.access(root, os.W_OK | os.X_OK):
            raise PlanError(f"plans.cache_dir: {root!r} is not writable by this user")

    # -- paths -------------------------------------------------------------------------

    def plan_path(self, key: PlanKey) -> str:
        return os.path.join(self.root, key.name + _PLAN)

    def _manifest_path(self, name: str) -> str:
        return os.path.join(self.root, name + _MANIFEST)

    # -- writing -----------------------------------------------------------------------

    def _write_atomic(self, path: str, data: bytes) -> None:
        folder, base = os.path.split(path)
        tmp = os.path.join(folder, f"{_TMP}{os.getpid()}-{base}")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            _fsync_dir(folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise PlanError(f"{path}: cannot write the plan cache: {exc.strerror}") from exc

    def put(self, key: PlanKey, plan: bytes, facts: Dict[str, Any]) -> str:
        """Store ``plan`` under ``key``; the manifest goes last, so only whole plans count."""
        path = self.plan_path(key)
        manifest: Dict[str, Any] = {"digest": key.digest, "name": key.name, "key": key.document}
        manifest["sha256"] = _sha256(plan)
        manifest["size_bytes"] = len(plan)
        manifest.update(facts)
        self._write_atomic(path, plan)
        try:
            self._write_atomic(self._manifest_path(key.name), json.dumps(manifest, indent=1, sort_keys=True).encode())
        except PlanError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self.evict(keep=key.digest)
        return path

    def annotate(self, key: PlanKey, facts: Dict[str, Any]) -> None:
        """Add ``facts`` to a stored plan's manifest (atomically; the plan is unchanged)."""
        manifest = self.manifest(key.name)
        if manifest is None or manifest.get("digest") != key.digest:
            raise PlanError(f"{self._manifest_path(key.name)}: no manifest for plan {key.name}")
        manifest.update(facts)
        self._write_atomic(self._manifest_path(key.name), json.dumps(manifest, indent=1, sort_keys=True).encode())

    def record_failure(self, key: PlanKey, reason: str) -> None:
        """Remember that building ``key`` failed, so the next start does not spend a build on it."""
        doc = {"digest": key.digest, "name": key.name, "reason": reason, "failed_at": time.time()}
        self._write_atomic(os.path.join(self.root, key.name + _FAILED), json.dumps(doc, sort_keys=True).encode())

    def failure(self, key: PlanKey) -> Optional[Dict[str, Any]]:
        """The recorded failure of building exactly ``key``, if any."""
        try:
            with open(os.path.join(self.root, key.name + _FAILED), encoding="utf-8") as handle:
                doc = json.load(handle)
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("digest") == key.digest else None

    def forget_failure(self, key: PlanKey) -> None:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.root, key.name + _FAILED))

    # -- reading -----------------------------------------------------------------------

    def manifest(self, name: str) -> Optional[Dict[str, Any]]:
        """The stored manifest of plan ``name``; None when it is missing or unreadable."""
        try:
            with open(self._manifest_path(name), encoding="utf-8") as handle:
                doc = json.load(handle)
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def get(self, key: PlanKey) -> Optional[bytes]:
        """The verified plan bytes, or None (absent; or corrupt, which is quarantined)."""
        manifest = self.manifest(key.name)
        if manifest is None or manifest.get("digest") != key.digest:
            return None
        try:
            with open(self.plan_path(key), "rb") as handle:
                plan = handle.read()
        except OSError:
            return None
        if _sha256(plan) != manifest.get("sha256"):
            self.quarantine(key.name, "SHA-256 of the plan does not match its manifest")
            return None
        with contextlib.suppress(OSError):
            os.utime(self.plan_path(key))  # last use, for LRU eviction
        return plan

    def quarantine(self, name: str, reason: str) -> None:
        """Move a plan aside (kept for diagnosis, never loaded again) with one log line."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = os.path.join(self.root, "quarantine", f"{name}.{stamp}")
        for suffix in (_PLAN, _MANIFEST):
            with contextlib.suppress(OSError):
                os.replace(os.path.join(self.root, name + suffix), target + suffix)
        with contextlib.suppress(OSError), open(target + ".reason", "w", encoding="utf-8") as handle:
            handle.write(reason + "\n")
        log.warning("plan %s quarantined: %s; it will be rebuilt", name, reason)

    def entries(self) -> List[StoredPlan]:
        plans = []
        for entry in sorted(os.listdir(self.root)):
            if not entry.endswith(_MANIFEST) or entry.startswith(_TMP):
                continue
            name = entry[: -len(_MANIFEST)]
            manifest = self.manifest(name)
            path = os.path.join(self.root, name + _PLAN)
            if manifest is None or not os.path.exists(path):
                continue
            info = os.stat(path)
            plans.append(StoredPlan(name, str(manifest.get("digest")), path, info.st_size, info.st_mtime, manifest))
        return plans

    def verify(self) -> List[Dict[str, Any]]:
        """Re-hash every plan; corrupt ones are quarantined. One report row per plan."""
        rows = []
        for plan in self.entries():
            with open(plan.path, "rb") as handle:
                ok = _sha256(handle.read()) == plan.manifest.get("sha256")
            if not ok:
                self.quarantine(plan.name, "SHA-256 of the plan does not match its manifest")
            rows.append({"name": plan.name, "ok": ok})
        return rows

    # -- locks and use -----------------------------------------------------------------

    def _lock_file(self, digest: str, kind: str) -> IO[bytes]:
        return open(os.path.join(self.root, ".locks", f"{digest}.{kind}"), "ab")

    @contextlib.contextmanager
    def build_lock(self, key: PlanKey) -> Iterator[None]:
        """Held while building: a second process waits, then finds the plan built."""
        handle = self._lock_file(key.digest, "build")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def hold(self, key: PlanKey) -> None:
        """Mark a plan in use by this process until ``release`` (eviction skips it)."""
        if key.digest not in self._use_handles:
            handle = self._lock_file(key.digest, "use")
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            self._use_handles[key.digest] = handle

    def release(self, key: PlanKey) -> None:
        handle = self._use_handles.pop(key.digest, None)
        if handle is not None:
            handle.close()

    def _in_use(self, digest: str) -> bool:
        if digest in self._use_handles:
            return True
        handle = self._lock_file(digest, "use")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return True
            raise
        finally:
            handle.close()
        return False

    # -- housekeeping ------------------------------------------------------------------

    def evict(self, keep: Optional[str] = None) -> List[str]:
        """Remove least-recently-used plans beyond the size/count limits, never one in use."""
        plans = sorted(self.entries(), key=lambda p: p.last_used)
        total = sum(p.size_bytes for p in plans)
        removed: List[str] = []
        for plan in plans:
            over_count = self.max_count and len(plans) - len(removed) > self.max_count
            over_size = self.max_bytes and total > self.max_bytes
            if not (over_count or over_size):
                break
            if plan.digest == keep or self._in_use(plan.digest):
                continue
            for suffix in (_MANIFEST, _PLAN):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.root, plan.name + suffix))
            total -= plan.size_bytes
            removed.append(plan.name)
            log.info("plan %s evicted (least recently used)", plan.name)
        return removed

    def prune(self) -> List[str]:
        """Delete quarantined plans, leftovers of interrupted writes, plans without a manifest
        and recorded build failures (so those builds are tried again)."""
        removed = []
        quarantine = os.path.join(self.root, "quarantine")
        for entry in os.listdir(quarantine):
            os.unlink(os.path.join(quarantine, entry))
            removed.append(f"quarantine/{entry}")
        for entry in os.listdir(self.root):
            path = os.path.join(self.root, entry)
            orphan = entry.endswith(_PLAN) and not os.path.exists(path[: -len(_PLAN)] + _MANIFEST)
            if entry.startswith(_TMP) or orphan or entry.endswith(_FAILED):
                os.unlink(path)
                removed.append(entry)
        return removed + self.evict()
