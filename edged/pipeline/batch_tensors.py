"""The tensors one model's frames pass through on their way to the engine: a recycled
sample tensor per frame, filled by preprocessing, and each engine's batch tensors."""

from __future__ import annotations

from collections import deque
from typing import List, Optional

import numpy as np

from edged.backends.base import TensorSpec
from edged.config.model import ModelConfig
from edged.errors import ConfigError
from edged.pipeline.frame import Frame
from edged.pipeline.preprocess import Preprocessor

__all__ = ["BatchTensors"]


class BatchTensors:
    def __init__(self, model: ModelConfig, spec: TensorSpec, preprocess: Preprocessor, engines: int) -> None:
        fixed: Optional[int] = spec.shape[0] if spec.shape else None
        if fixed is not None and model.batch > fixed:
            raise ConfigError(f"models: {model.name!r} batch {model.batch} exceeds the model's fixed batch {fixed}")
        # A fixed batch dimension is padded; a dynamic one runs with the frames at hand.
        self.pad = fixed is not None
        self.capacity = fixed if fixed is not None else model.batch
        self._shape, self._dtype = preprocess.sample_shape, preprocess.dtype
        # Two batch tensors per engine when batches have more than one frame: the
        # next-batch helper (edged.pipeline.next_batch) fills one while the engine runs
        # from the other.
        slots = 2 if self.capacity > 1 else 1
        self._batches = [
            [np.zeros((self.capacity, *self._shape), dtype=self._dtype) for _ in range(slots)] for _ in range(engines)
        ]
        self._engines = engines
        # Sample tensors are recycled: a fresh multi-hundred-KB array per frame costs an
        # mmap and page faults, measurable against a few-ms inference.
        self._pool: "deque[np.ndarray]" = deque(maxlen=self._pool_size(model))

    def _pool_size(self, model: ModelConfig) -> int:
        in_flight = self.capacity * self._engines
        return sum(s.queue_size + 1 for s in model.sources) + in_flight + 2

    def sources_changed(self, model: ModelConfig) -> None:
        """Size the pool for ``model``'s sources (some were added, removed or resized)."""
        self._pool = deque(self._pool, maxlen=self._pool_size(model))

    def take(self) -> np.ndarray:
        """A sample tensor for a frame to be preprocessed into."""
        try:
            return self._pool.pop()
        except IndexError:
            fresh: np.ndarray = np.empty(self._shape, dtype=self._dtype)
            return fresh

    def recycle(self, frames: List[Frame]) -> None:
        """The frames' sample tensors go back to the pool (once; a frame keeps none). A
        frame the engine took as it was (Preprocessor.as_is) has its own image as its
        tensor, which is the source's, not the pool's."""
        for frame in frames:
            tensor = frame.tensor
            if tensor is not None:
                if tensor is not frame.image:
                    self._pool.append(tensor)
                frame.tensor = None

    def batch(self, frames: List[Frame], engine: int, slot: int) -> np.ndarray:
        """The frames as one batch, in batch tensor ``slot`` of ``engine``; a single frame on
        a dynamic batch axis goes in without a copy."""
        n = len(frames)
        if n == 1 and not self.pad:
            tensor = frames[0].tensor
            assert tensor is not None
            single: np.ndarray = tensor[None]
            return single
        buffer = self._batches[engine][slot]
        for i, frame in enumerate(frames):
            buffer[i] = frame.tensor
        batch: np.ndarray = buffer if self.pad else buffer[:n]
        return batch
