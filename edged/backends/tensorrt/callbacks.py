"""Python objects TensorRT calls back during a build: the INT8 entropy calibrator (up to
10.x) and the progress monitor (10.x and newer). TensorRT swallows exceptions raised in
callbacks, so each keeps its first error for the builder to raise afterwards."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from edged.backends.base import ProgressCallback
from edged.backends.tensorrt.api import TrtApi, gate
from edged.cuda import H2D

__all__ = ["make_calibrator", "make_progress_monitor", "write_atomic"]


def write_atomic(path: str, data: bytes) -> None:
    """Whole file or nothing: a crash mid-write never leaves a truncated cache."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@gate(max_major=10)  # IInt8EntropyCalibrator2 was removed in 11
def make_calibrator(api: TrtApi, cuda: Any, batches: Iterator[np.ndarray], batch: int, cache_path: str) -> Any:
    """An IInt8EntropyCalibrator2 feeding ``batches`` through one device buffer.

    With a readable cache at ``cache_path`` TensorRT never asks for a batch, so the images
    are read once per model, not once per build.
    """
    trt = api.trt

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: Optional[BaseException] = None
            self.batches_read = 0
            self._device: Any = None
            self._host: Any = None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            try:
                data = next(batches, None)
                if data is None:
                    return None
                if self._device is None:
                    self._device = cuda.malloc(data.nbytes)
                    self._host = cuda.host_alloc(data.nbytes)
                self._host.array(data.dtype, data.shape)[...] = data
                cuda.copy(self._device.device_ptr, self._host.host_ptr, data.nbytes, H2D)
                self.batches_read += 1
                return [self._device.device_ptr]
            except BaseException as exc:
                self.error = exc
                return None

        def read_calibration_cache(self) -> Optional[bytes]:
            if os.path.isfile(cache_path):
                with open(cache_path, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                write_atomic(cache_path, bytes(cache))
            except BaseException as exc:
                self.error = exc

        def release(self) -> None:
            for res in (self._device, self._host):
                if res is not None:
                    res.free()

    return _Calibrator()


@gate(min_major=10)  # IProgressMonitor arrived in 10.0
def make_progress_monitor(api: TrtApi, progress: ProgressCallback) -> Any:
    """An IProgressMonitor that reports the outermost phase's step fraction."""
    trt = api.trt

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.error: Optional[BaseException] = None
            self._steps: Dict[str, int] = {}
            self._top: Optional[str] = None

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            self._steps[phase_name] = num_steps
            if parent_phase is None:
                self._top = phase_name
                self._report(0.0, phase_name)

        def step_complete(self, phase_name: str, step: int) -> bool:
            if phase_name == self._top and self._steps.get(phase_name):
                self._report((step + 1) / self._steps[phase_name], phase_name)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self._steps.pop(phase_name, None)

        def _report(self, fraction: float, phase: str) -> None:
            try:
                progress(min(fraction, 1.0), phase)
            except BaseException as exc:
                self.error = exc

    return _Monitor()
