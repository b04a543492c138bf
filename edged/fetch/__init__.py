"""Model files fetched by URL into a content-addressed store (docs/downloads.md)."""

from __future__ import annotations

from edged.fetch.fetcher import Fetcher, FetchError, sha256_of
from edged.fetch.gc import collect, referenced_hashes
from edged.fetch.progress import DownloadBoard, DownloadProgress
from edged.fetch.settings import DownloadSettings, download_settings

__all__ = [
    "DownloadBoard",
    "DownloadProgress",
    "DownloadSettings",
    "FetchError",
    "Fetcher",
    "collect",
    "download_settings",
    "referenced_hashes",
    "sha256_of",
]
