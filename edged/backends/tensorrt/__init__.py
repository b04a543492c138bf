"""TensorRT backend: builds engines from ONNX on the device and runs them through edged.cuda.

Supported TensorRT generations: 8.5/8.6 (JetPack 5), 10.x (JetPack 6, dGPUs) and 11.x
(JetPack 7). Every call that exists only in some of them sits behind a version gate
(``api.major``) or a ``hasattr``/``getattr`` probe; tests/backends/test_tensorrt_surface.py
checks that against NVIDIA's per-version API tables.
"""

from __future__ import annotations

from typing import List

# Nothing is re-exported here: import from the module that does the job.
__all__: List[str] = []
