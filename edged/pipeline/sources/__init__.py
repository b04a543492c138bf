"""Frame sources."""

from edged.pipeline.sources.base import SOURCES, Source, create_source

__all__ = ["SOURCES", "Source", "create_source"]
