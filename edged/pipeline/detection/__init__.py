"""Detection post-processing: output decoding, class-aware NMS, letterbox undo."""

from __future__ import annotations

from typing import List

# Nothing is re-exported here: import from the module that does the job.
__all__: List[str] = []
