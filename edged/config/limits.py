"""Limits a config must keep beyond what each field's schema range says: numbers that
JSON or YAML can spell but a device cannot use, the model count, and the memory the
models are predicted to need against the memory the device has.

The memory estimate is deliberately simple and errs high. Per model:

    frames held  = queue_size + 2 * batch + 4   (the queue, the batch in inference, the
                                                 batch at the output, and the buffers the
                                                 source and the pool hold)
    bytes        = frames held * (frame bytes + tensor bytes)
                   + 2 * model file size        (the file read, the runtime's copy; the
                                                 declared size of one still to download)
                   + 64 MiB                     (runtime session, arenas, thread stacks)
                   + 256 MiB for an images source (its decoded-image cache)

where a frame is height x width x 3 bytes (the synthetic ``size``, a camera's
``width``/``height``, else the preprocess size, else 1080 x 1920 for streams, files and
folders whose size is known only once opened) and a tensor is the preprocess size (else the
frame size) x 3 channels x 4 bytes. The sum over all models must stay within
``limits.memory_fraction`` of the device's memory (MemTotal of /proc/meminfo, read under
the telemetry root; on Jetsons the GPU shares it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from edged.config.model import Config, ModelConfig
from edged.config.schema import format_path

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "IMAGE_CACHE_BYTES",
    "MAX_FRAME_PIXELS",
    "OutOfRange",
    "count_problems",
    "memory_problems",
    "model_memory_bytes",
    "numeric_problems",
    "read_mem_total",
]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
# The schema's largest frame side is 8192; a decoded image beyond this is refused too.
MAX_FRAME_PIXELS = 8192 * 8192
IMAGE_CACHE_BYTES = 256 << 20
DEFAULT_MAX_MODELS = 32
DEFAULT_MEMORY_FRACTION = 0.8
_UNKNOWN_FRAME_HW = (1080, 1920)
_MODEL_OVERHEAD_BYTES = 64 << 20
_SHOWN_DIGITS = 24


class OutOfRange(str):
    """The text of a number a parser met that no field can hold (an infinity, NaN, an
    integer beyond 64 bits), kept as text so the problem can name its key path."""


Path_ = Tuple[Union[str, int], ...]


def _walk(node: Any, path: Path_ = ()) -> Iterator[Tuple[Path_, Any]]:
    stack = [(path, node)]
    while stack:
        where, item = stack.pop()
        yield where, item
        if isinstance(item, dict):
            stack.extend(((*where, str(k)), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(item))))


def _shown(text: str) -> str:
    digits = text.lstrip("+-")
    if len(digits) <= _SHOWN_DIGITS:
        return text
    return f"{text[: _SHOWN_DIGITS + 1]}... ({len(digits)} digits)"


def numeric_problems(doc: Any) -> List[str]:
    """Every number no config field can hold, with its key path: infinities and NaN
    (YAML's ``.inf``, JSON's ``1e999``), integers beyond the signed 64-bit range."""
    problems = []
    for path, value in _walk(doc):
        if isinstance(value, OutOfRange):
            problems.append(f"{format_path(path)}: {_shown(value)} is not a finite number within the 64-bit range")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{format_path(path)}: {value!r} is not a finite number")
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            problems.append(f"{format_path(path)}: {_shown(str(value))} is outside the signed 64-bit integer range")
    return problems


def count_problems(doc: Any) -> List[str]:
    """The model count against ``limits.max_models``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        return []
    limits = doc.get("limits")
    limit = limits.get("max_models", DEFAULT_MAX_MODELS) if isinstance(limits, dict) else DEFAULT_MAX_MODELS
    if not isinstance(limit, int) or len(doc["models"]) <= limit:
        return []
    return [f"models: {len(doc['models'])} models exceed limits.max_models ({limit})"]


def read_mem_total(root: str = "/") -> Optional[int]:
    """MemTotal of ``<root>/proc/meminfo`` in bytes, or None when it cannot be read."""
    try:
        text = Path(root, "proc/meminfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if name == "MemTotal" and parts and parts[0].isdigit():
            return int(parts[0]) * 1024  # the kernel writes kB (proc(5))
    return None


def _frame_hw(model: ModelConfig) -> Tuple[int, int]:
    source = model.source
    size = source.get("size")
    if source.type == "synthetic" and size:
        return int(size[0]), int(size[1])
    if source.type in ("v4l2", "csi") and source.get("width") and source.get("height"):
        return int(source.get("height")), int(source.get("width"))
    if source.type == "synthetic" and model.preprocess.size:
        return model.preprocess.size
    return _UNKNOWN_FRAME_HW


def model_memory_bytes(model: ModelConfig) -> int:
    """The module docstring's estimate for one model."""
    frame_h, frame_w = _frame_hw(model)
    tensor_h, tensor_w = model.preprocess.size or (frame_h, frame_w)
    held = model.queue_size + 2 * model.batch + 4
    total = held * (frame_h * frame_w * 3 + tensor_h * tensor_w * 3 * 4) + _MODEL_OVERHEAD_BYTES
    try:
        total += 2 * os.path.getsize(model.path)
    except OSError:  # a missing file is reported where the file is needed
        # A file still to download (edged/config/sources.py) counts with its declared size.
        total += 2 * next((r.size for r in model.sources if r.field == "path" and r.size), 0)
    if model.source.type == "images":
        total += IMAGE_CACHE_BYTES
    return total


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def memory_problems(config: Config, mem_total: Optional[int]) -> List[str]:
    """The predicted memory of all models against ``limits.memory_fraction`` of
    ``mem_total`` (bytes; None: unknown, nothing is refused)."""
    if mem_total is None or not config.models:
        return []
    limits: Dict[str, Any] = dict(config.document.get("limits") or {})
    fraction = float(limits.get("memory_fraction", DEFAULT_MEMORY_FRACTION))
    per_model = [(model_memory_bytes(m), i, m.name) for i, m in enumerate(config.models)]
    total = sum(size for size, _, _ in per_model)
    budget = mem_total * fraction
    if total <= budget:
        return []
    size, index, name = max(per_model)
    return [
        f"models: predicted memory {_gib(total)} exceeds limits.memory_fraction {fraction:g} of this device's "
        f"{_gib(mem_total)} ({_gib(budget)}); the largest is models[{index}] {name!r} at {_gib(size)} "
        "(see edged/config/limits.py for the estimate)"
    ]
