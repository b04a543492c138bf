"""``control.downloads``, typed: how model files named by URL are fetched and kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from edged.config.sources import store_dir

__all__ = ["DownloadSettings", "download_settings"]


@dataclass(frozen=True)
class DownloadSettings:
    store_dir: str
    allow_http: bool = False
    max_bytes: int = 4 << 30
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    timeout_s: float = 30.0
    deadline_s: float = 1800.0
    retries: int = 5
    backoff_s: float = 1.0
    reserve_bytes: int = 64 << 20
    gc_grace_s: float = 86400.0


def download_settings(document: Mapping[str, Any]) -> DownloadSettings:
    """From a (defaults-filled or not) config document."""
    control = document.get("control")
    section: Mapping[str, Any] = {}
    if isinstance(control, dict) and isinstance(control.get("downloads"), dict):
        section = control["downloads"]
    d = DownloadSettings(store_dir="")
    return DownloadSettings(
        store_dir=store_dir(document),
        allow_http=bool(section.get("allow_http", d.allow_http)),
        max_bytes=int(section.get("max_bytes", d.max_bytes)),
        ca_file=section.get("ca_file"),
        cert_file=section.get("cert_file"),
        key_file=section.get("key_file"),
        timeout_s=float(section.get("timeout_s", d.timeout_s)),
        deadline_s=float(section.get("deadline_s", d.deadline_s)),
        retries=int(section.get("retries", d.retries)),
        backoff_s=float(section.get("backoff_s", d.backoff_s)),
        reserve_bytes=int(section.get("reserve_mb", d.reserve_bytes >> 20)) << 20,
        gc_grace_s=float(section.get("gc_grace_s", d.gc_grace_s)),
    )
