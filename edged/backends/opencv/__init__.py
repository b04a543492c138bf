"""OpenCV dnn backend: serves Caffe models on the CPU, where TensorRT's parsers are absent."""

from __future__ import annotations

from typing import List

# Nothing is re-exported here: import from the module that does the job.
__all__: List[str] = []
