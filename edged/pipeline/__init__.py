"""Continuous inference: source -> preprocess -> batcher -> runner -> postprocess -> sink."""

from __future__ import annotations

from typing import List

# Nothing is re-exported here: import from the module that does the job.
__all__: List[str] = []
