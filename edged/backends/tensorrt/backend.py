"""TensorRTBackend: the Backend interface over TensorRT 8.5 to 11.x."""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from typing import Any, Dict, Optional

from edged.backends.base import Backend, BuildOptions, BuiltPlan, ProgressCallback, Runner
from edged.backends.calibration import calibration_set
from edged.backends.tensorrt.api import LogTail, import_tensorrt, make_logger
from edged.backends.tensorrt.builder import EngineBuilder
from edged.backends.tensorrt.engine import deserialize
from edged.backends.tensorrt.formats import network_source
from edged.backends.tensorrt.network import NetworkSource, OnnxNetwork
from edged.backends.tensorrt.options import parse_options
from edged.backends.tensorrt.runner import TensorRTRunner
from edged.backends.tensorrt.runner_implicit import ImplicitBatchRunner, is_implicit_batch
from edged.errors import BackendError, BackendUnavailable, CudaError

__all__ = ["TensorRTBackend"]

log = logging.getLogger(__name__)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, trt_module: Optional[Any] = None, cuda: Optional[Any] = None) -> None:
        """``cuda``: device 0's runtime (edged.cuda.load_runtime() when None); the runtimes of
        other GPUs come from its ``for_device``."""
        self.api = import_tensorrt(trt_module)
        if cuda is None:
            from edged.cuda import load_runtime

            try:
                cuda = load_runtime()
            except CudaError as exc:
                raise BackendUnavailable(f"backend 'tensorrt' needs a usable NVIDIA GPU: {exc}") from exc
        self.cuda = cuda
        self.tail = LogTail()
        self.logger = make_logger(self.api, self.tail)
        self._gpus: Dict[int, EngineBuilder] = {}
        self._gpus_lock = threading.Lock()
        self._gpu(0)

    def _gpu(self, index: int) -> EngineBuilder:
        """The engine builder of CUDA device ``index``, holding that device's runtime and tag."""
        with self._gpus_lock:
            engines = self._gpus.get(index)
            if engines is None:
                cuda = self.cuda
                if index != cuda.device:
                    count = cuda.device_count()
                    if index >= count:
                        raise BackendError(f"device gpu{index}: this host has {count} CUDA device(s)")
                    try:
                        cuda = cuda.for_device(index)
                    except CudaError as exc:
                        raise BackendError(f"device gpu{index}: {exc}") from exc
                props = cuda.properties()
                tag = re.sub(r"[^A-Za-z0-9]+", "-", props.name).strip("-")
                device_tag = "{}-sm{}{}".format(tag, *props.compute_capability)
                engines = EngineBuilder(self.api, cuda, self.logger, self.tail, device_tag)
                self._gpus[index] = engines
            return engines

    def device_tag(self, gpu_index: int = 0) -> str:
        """The GPU model and compute capability of CUDA device ``gpu_index``, as named in
        device-specific caches (timing caches)."""
        return self._gpu(gpu_index).device_tag

    def version(self) -> str:
        return self.api.version_string

    def num_dla_cores(self) -> int:
        """DLA cores TensorRT sees here: the authoritative count (0 on dGPUs and Thor)."""
        return int(self.api.trt.Builder(self.logger).num_DLA_cores)

    def build_plan(
        self, model_path: str, options: BuildOptions, progress: Optional[ProgressCallback] = None
    ) -> BuiltPlan:
        source = network_source(self.api, model_path, options.model_format)
        if source is None:
            return self.build_from_source(OnnxNetwork(model_path), options, progress)
        if self.api.major >= 11 and options.precision != "fp32":
            # 11.x networks are strongly typed; only an ONNX model can be converted beforehand.
            raise BackendError(
                f"{model_path}: TensorRT {self.api.version_string} builds strongly typed networks; a "
                f"{options.model_format.type} model there takes its precision from its own layers (use precision fp32)"
            )
        opts = parse_options(options)
        calibration = calibration_set(options) if opts.precision == "int8" else None
        return self._gpu(opts.gpu_index).build(source, opts, calibration, progress)

    def build_from_source(
        self, source: NetworkSource, options: BuildOptions, progress: Optional[ProgressCallback] = None
    ) -> BuiltPlan:
        """Build from any NetworkSource (the ONNX parser today; other front ends plug in here)."""
        opts = parse_options(options)
        engines = self._gpu(opts.gpu_index)
        calibration = calibration_set(options) if opts.precision == "int8" else None
        prefix = options.input_prefix
        if prefix is not None and not isinstance(source, OnnxNetwork):
            raise BackendError(f"{source.path}: preprocessing in the plan needs an ONNX model")
        if self.api.major < 11 or opts.precision == "fp32":
            if prefix is None:
                return engines.build(source, opts, calibration, progress)
            with tempfile.TemporaryDirectory(prefix="edged-trt-") as tmp:
                prefixed = prefix.apply(source.path, tmp)
                try:
                    return engines.build(OnnxNetwork(prefixed), opts, calibration, progress)
                except BackendError as exc:  # named after the model the operator configured
                    raise BackendError(str(exc).replace(prefixed, source.path)) from exc
        # 11.x builds strongly typed networks: reduced precision must be in the model itself.
        from edged.backends.onnxruntime.precision import convert_model

        with tempfile.TemporaryDirectory(prefix="edged-trt-") as tmp:
            if progress is not None:
                progress(None, f"converting the model to {opts.precision}")
            # float16 inputs and outputs: edge Casts would be GPU layers between DLA and memory, and
            # the runner casts feeds to the plan's input dtype anyway.
            converted = convert_model(source.path, opts.precision, tmp, calibration, keep_io_types=False)
            if prefix is not None:
                # After the conversion: the prefix computes in float32 and casts to the input's float16.
                converted = prefix.apply(converted, tmp)
            try:
                built = engines.build(OnnxNetwork(converted), opts, None, progress)
            except BackendError as exc:  # named after the model the operator configured
                raise BackendError(str(exc).replace(converted, source.path)) from exc
        built.build_log.insert(0, f"INFO: {source.path} converted to {opts.precision} for a strongly typed build")
        return built

    def load_plan(self, plan: bytes, options: BuildOptions) -> Runner:
        """Raises PlanError with TensorRT's logged reason when the plan is foreign (another
        TensorRT version or another GPU); the plan cache then rebuilds."""
        opts = parse_options(options)
        cuda = self._gpu(opts.gpu_index).cuda
        # An engine belongs to the device current when it is deserialised.
        cuda.use()
        engine, runtime = deserialize(self.api, self.logger, self.tail, plan, opts.dla_core)
        if self.api.major < 10 and is_implicit_batch(self.api, engine):  # UFF plans (8.5/8.6)
            return ImplicitBatchRunner(self.api, cuda, engine, runtime)
        return TensorRTRunner(self.api, cuda, engine, runtime)
