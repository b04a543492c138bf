"""Unpacking a verified tar archive of images into its folder in the store.

Only regular files and folders are taken; absolute names, ``..``, links and device nodes
are refused (a crafted archive must not write outside its folder: the CVE-2007-4559
class of tarfile bugs), and the unpacked size is bounded. Unpacked beside the store and
renamed into place, so the folder a model reads is either whole or absent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile

from edged.errors import EdgedError

__all__ = ["ArchiveError", "unpack"]


class ArchiveError(EdgedError):
    pass


def _safe_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return not name.startswith("/") and ".." not in parts


def unpack(archive: str, target: str, scratch: str, max_bytes: int) -> None:
    """Unpack ``archive`` into the folder ``target`` (which must not exist yet), through
    a temporary folder under ``scratch``."""
    os.makedirs(scratch, exist_ok=True)
    work = tempfile.mkdtemp(prefix=os.path.basename(target) + ".", dir=scratch)
    try:
        total = 0
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if not _safe_name(member.name):
                    raise ArchiveError(f"{archive}: member {member.name!r} would land outside its folder")
                if member.isdir():
                    os.makedirs(os.path.join(work, member.name), exist_ok=True)
                    continue
                if not member.isfile():
                    raise ArchiveError(f"{archive}: member {member.name!r} is not a regular file or folder")
                total += member.size
                if total > max_bytes:
                    raise ArchiveError(f"{archive}: unpacks to more than control.downloads.max_bytes ({max_bytes})")
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has data
                path = os.path.join(work, member.name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with source, open(path, "wb") as out:
                    shutil.copyfileobj(source, out)
        os.replace(work, target)
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{archive}: cannot unpack: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(work)
