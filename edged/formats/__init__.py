"""Model formats other than ONNX: what each needs, which backends take it, and the
content hashes that key its plans."""

from __future__ import annotations

from edged.formats.spec import FORMAT_BACKENDS, FORMATS, ModelFormat, UffInput

__all__ = ["FORMATS", "FORMAT_BACKENDS", "ModelFormat", "UffInput"]
