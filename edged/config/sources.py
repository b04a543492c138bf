"""Model files named by URL: where each lands in the content-addressed store.

A model entry's file fields (``path``, ``postprocess.labels``, ``calibration.images``,
``accuracy.images``) may hold ``{"url": ..., "sha256": ..., "size": ...}`` instead of a
local path. The config document keeps that object as written (it is what a push signs,
what is persisted and what ``config/state`` shows); the typed config sees the file's
place in the store, ``<store_dir>/<sha256>``, or ``<store_dir>/<sha256>.d`` for an images
folder delivered as a tar archive. So a model whose file is downloaded runs exactly like
one naming a local file, and a new hash is a new path, which makes it a changed model.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

__all__ = [
    "ARCHIVE_SUFFIX",
    "REMOTE_FIELDS",
    "RemoteFile",
    "document_sources",
    "is_remote",
    "localise",
    "source_problems",
    "store_dir",
]

# (key path inside a model entry, whether the field names a folder: then the download is
# a tar archive of it).
REMOTE_FIELDS: Tuple[Tuple[Tuple[str, ...], bool], ...] = (
    (("path",), False),
    (("postprocess", "labels"), False),
    (("calibration", "images"), True),
    (("accuracy", "images"), True),
)
ARCHIVE_SUFFIX = ".d"
_DEFAULT_MODEL_DIR = "/var/lib/edged/models"


@dataclass(frozen=True)
class RemoteFile:
    """One file a model needs that is fetched by URL."""

    field: str  # "path", "postprocess.labels", ...
    url: str
    sha256: str  # lower-case hex
    size: Optional[int]
    archive: bool  # a tar archive unpacked into a folder
    store: str  # the store folder

    @property
    def file(self) -> str:
        """Where the verified download lies."""
        return os.path.join(self.store, self.sha256)

    @property
    def path(self) -> str:
        """What the model reads: the file, or the folder an archive unpacks into."""
        return self.file + ARCHIVE_SUFFIX if self.archive else self.file


def is_remote(value: Any) -> bool:
    return isinstance(value, dict) and "url" in value and "sha256" in value


def store_dir(document: Mapping[str, Any]) -> str:
    """``control.downloads.store_dir``, else ``store`` under the first model directory."""
    control = document.get("control")
    control = control if isinstance(control, dict) else {}
    downloads = control.get("downloads")
    if isinstance(downloads, dict) and isinstance(downloads.get("store_dir"), str):
        return str(downloads["store_dir"])
    dirs = control.get("model_dirs")
    first = dirs[0] if isinstance(dirs, list) and dirs and isinstance(dirs[0], str) else _DEFAULT_MODEL_DIR
    return os.path.join(first, "store")


def _remote_files(entry: Mapping[str, Any], store: str) -> Iterator[Tuple[Tuple[str, ...], RemoteFile]]:
    for path, archive in REMOTE_FIELDS:
        node: Any = entry
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if is_remote(node):
            size = node.get("size")
            yield (
                path,
                RemoteFile(
                    field=".".join(path),
                    url=str(node["url"]),
                    sha256=str(node["sha256"]).lower(),
                    size=int(size) if isinstance(size, int) else None,
                    archive=archive,
                    store=store,
                ),
            )


def localise(entry: Mapping[str, Any], store: str) -> Tuple[Dict[str, Any], Tuple[RemoteFile, ...]]:
    """A copy of a model entry with every URL object replaced by its place in the store,
    and the remote files it names."""
    local: Dict[str, Any] = copy.deepcopy(dict(entry))
    found: List[RemoteFile] = []
    for path, remote in _remote_files(entry, store):
        node = local
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = remote.path
        found.append(remote)
    return local, tuple(found)


def document_sources(document: Mapping[str, Any]) -> List[Tuple[int, str, RemoteFile]]:
    """(model index, model name, remote file) for every URL object of a config document."""
    store = store_dir(document)
    models = document.get("models")
    found = []
    for index, entry in enumerate(models if isinstance(models, list) else []):
        if isinstance(entry, dict):
            for _, remote in _remote_files(entry, store):
                found.append((index, str(entry.get("name")), remote))
    return found


def _allows_http(document: Mapping[str, Any]) -> bool:
    control = document.get("control")
    downloads = control.get("downloads") if isinstance(control, dict) else None
    return isinstance(downloads, dict) and downloads.get("allow_http") is True


def source_problems(document: Mapping[str, Any]) -> List[str]:
    """URLs the config may not name: http:// unless control.downloads.allow_http."""
    if _allows_http(document):
        return []
    return [
        f"models[{index}].{remote.field}.url: http:// needs control.downloads.allow_http (use https://)"
        for index, _, remote in document_sources(document)
        if remote.url[:7].lower() == "http://"
    ]
