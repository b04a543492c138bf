"""``edgectl push --base-url URL --model NAME=FILE``: the operator uploads FILE to their
server under URL; edgectl hashes the local copy and writes the download entry
(``{"url", "sha256", "size"}``, docs/downloads.md) into the push, so the device fetches
exactly those bytes."""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from typing import Any, Dict, List, Sequence

from edged.errors import EdgedError

__all__ = ["download_entry", "attach_files"]

# --model and --labels: where in a model entry the file goes.
FIELDS = {"model": ("path",), "labels": ("postprocess", "labels")}


def download_entry(local: str, base_url: str) -> Dict[str, Any]:
    """The entry for ``local`` served at ``base_url``/<its file name>."""
    digest = hashlib.sha256()
    try:
        with open(local, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise EdgedError(f"{local}: cannot read: {exc.strerror}") from exc
    if not base_url.lower().startswith(("https://", "http://")):
        raise EdgedError(f"--base-url {base_url!r}: expected an https:// URL")
    url = base_url.rstrip("/") + "/" + urllib.parse.quote(os.path.basename(local))
    return {"url": url, "sha256": digest.hexdigest(), "size": os.path.getsize(local)}


def _models(payload: Dict[str, Any]) -> List[Any]:
    body = payload.get("config") if "config" in payload else payload.get("patch")
    models = body.get("models") if isinstance(body, dict) else None
    return models if isinstance(models, list) else []


def attach_files(payload: Dict[str, Any], kind: str, specs: Sequence[str], base_url: str) -> None:
    """Put a download entry for each ``NAME=FILE`` of ``specs`` into model NAME of the push."""
    for spec in specs:
        name, sep, local = spec.partition("=")
        if not sep or not name or not local:
            raise EdgedError(f"--{kind} {spec!r}: expected NAME=FILE")
        entry = next((m for m in _models(payload) if isinstance(m, dict) and m.get("name") == name), None)
        if entry is None:
            raise EdgedError(f"--{kind} {spec!r}: the push has no model named {name!r} in its models list")
        *parents, key = FIELDS[kind]
        node = entry
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = download_entry(local, base_url)
