"""One engine build: network from a NetworkSource, builder config from TrtOptions."""

from __future__ import annotations

import logging
import os
import re
from typing import Any, List, Optional

from edged.backends.base import BuiltPlan, ProgressCallback, TensorSpec
from edged.backends.calibration import CalibrationSet
from edged.backends.input_prefix import NODE_PREFIX
from edged.backends.tensorrt.api import LogTail, TrtApi
from edged.backends.tensorrt.callbacks import make_calibrator, make_progress_monitor, write_atomic
from edged.backends.tensorrt.engine import deserialize, layer_placement
from edged.backends.tensorrt.network import (
    NetworkSource,
    OnnxNetwork,
    create_implicit_batch_network,
    create_network,
    dla_capability,
)
from edged.backends.tensorrt.options import CONTEXT_SLOTS, TrtOptions, profile_shapes
from edged.errors import BackendError
from edged.trt_releases import dla_supported, no_dla_reason

__all__ = ["EngineBuilder", "trt_dtype_name"]

log = logging.getLogger(__name__)

_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
    "BF16": "bfloat16",
}


def trt_dtype_name(dtype: Any) -> str:
    return _DTYPES.get(str(getattr(dtype, "name", dtype)).split(".")[-1], str(dtype))


class EngineBuilder:
    """Holds what every build on one GPU shares: the API, that GPU's CUDA runtime and tag, the
    logger and its tail."""

    def __init__(self, api: TrtApi, cuda: Any, logger: Any, tail: LogTail, device_tag: str) -> None:
        self.api = api
        self.cuda = cuda
        self.logger = logger
        self.tail = tail
        self.device_tag = device_tag

    def build(
        self,
        source: NetworkSource,
        opts: TrtOptions,
        calibration: Optional[CalibrationSet] = None,
        progress: Optional[ProgressCallback] = None,
    ) -> BuiltPlan:
        trt = self.api.trt
        # TensorRT builds, times tactics and calibrates on the calling thread's current device.
        self.cuda.use()
        mark = self.tail.mark()
        builder = trt.Builder(self.logger)
        if source.implicit_batch:
            network = create_implicit_batch_network(self.api, builder, opts.batch)
        else:
            network = create_network(self.api, builder)
        source.populate(self.api, network, self.logger, dla=opts.dla_core is not None)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_bytes)
        # DETAILED keeps layer types in the plan for the inspector (a few KiB, no speed cost).
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if not source.implicit_batch:  # implicit-batch networks have no dynamic shapes, hence no profiles
            self._profiles(builder, network, config, opts)
        self._dla(builder, network, config, opts)
        calibrator = self._precision(network, config, opts, calibration, source)
        capability = None
        if self.api.major >= 10 and opts.dla_core is not None and isinstance(source, OnnxNetwork):
            capability = dla_capability(self.api, builder, self.logger, config, source.path)
        cache_path = self._timing_cache(config, opts)
        monitor = None
        if progress is not None:
            progress(None, "building")
            if self.api.major >= 10:  # IProgressMonitor arrived in 10.0
                monitor = make_progress_monitor(self.api, progress)
                config.progress_monitor = monitor
        try:
            plan = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                calibrator.release()
        for callback in (calibrator, monitor):
            if callback is not None and callback.error is not None:
                raise BackendError(f"{source.path}: build callback failed: {callback.error}") from callback.error
        if plan is None:
            errors = self.tail.errors_since(mark) or ["build_serialized_network returned None"]
            raise BackendError(f"{source.path}: TensorRT {self.api.version_string} build failed: " + " | ".join(errors))
        if cache_path:
            write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
        data = bytes(plan)
        engine, _runtime = deserialize(self.api, self.logger, self.tail, data, opts.dla_core)
        placement = layer_placement(self.api, engine, opts.dla_core)
        if progress is not None:
            progress(1.0, "done")
        log_lines = self.tail.lines(since=mark)[-100:]
        if capability is not None:
            on_dla = sum(row["device"] == "dla" for row in capability)
            log_lines.append(
                f"INFO: ONNX parser DLA capability: {on_dla} of {len(capability)} nodes can run on the DLA"
            )
        return BuiltPlan(plan=data, build_log=log_lines, layer_placement=placement, dla_capability=capability)

    # -- config sections ---------------------------------------------------------------

    def _inputs(self, network: Any) -> List[TensorSpec]:
        specs = []
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(int(d) for d in tensor.shape)
            specs.append(
                TensorSpec(tensor.name, tuple(d if d >= 0 else None for d in shape), trt_dtype_name(tensor.dtype))
            )
        return specs

    def _profiles(self, builder: Any, network: Any, config: Any, opts: TrtOptions) -> None:
        dynamic = [spec for spec in self._inputs(network) if None in spec.shape]
        if not dynamic:
            return
        # One profile per runner slot (CONTEXT_SLOTS). A DLA plan keeps one: its profile must be
        # static (NvInfer.h 8.5.3, addInput: "provided profile must have same minimum, optimum,
        # and maximum dimensions") and a second one on the DLA is unverified; its runner then
        # uses a single context.
        count = 1 if opts.dla_core is not None else CONTEXT_SLOTS
        profiles = []
        for _ in range(count):
            profile = builder.create_optimization_profile()
            for spec in dynamic:
                shape = tuple(-1 if d is None else d for d in spec.shape)
                lo, opt, hi = profile_shapes(shape, opts.batch)
                # The DLA runs static shapes only: pin the profile to the configured batch.
                if opts.dla_core is not None:
                    lo = opt
                profile.set_shape(spec.name, lo, opt, hi)
            config.add_optimization_profile(profile)
            profiles.append(profile)
        if self.api.major < 11 and opts.precision == "int8":
            config.set_calibration_profile(profiles[0])

    def _dla(self, builder: Any, network: Any, config: Any, opts: TrtOptions) -> None:
        trt = self.api.trt
        if opts.dla_core is not None:
            if not dla_supported(self.api.version_string):
                raise BackendError(f"device: dla{opts.dla_core}: {no_dla_reason(self.api.version_string)}")
            cores = builder.num_DLA_cores
            if opts.dla_core >= cores:
                raise BackendError(f"device: dla{opts.dla_core} asked for, this device has {cores} DLA core(s)")
            if opts.precision == "fp32":
                raise BackendError(
                    "precision: the DLA runs fp16 or int8 only; set precision fp16 or int8 for a DLA device"
                )
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = opts.dla_core
            if opts.gpu_fallback:
                config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
            for pool, size in opts.dla_pools.items():
                config.set_memory_pool_limit(getattr(trt.MemoryPoolType, pool), size)
        if opts.dla_core is not None:
            # The preprocessing prefix (edged.backends.input_prefix) reads uint8 frames and casts
            # them: GPU work the DLA cannot do, pinned there so a plan without GPU fallback builds.
            # The ONNX parser names each layer after its node, adding suffixes where one node
            # becomes several layers, hence the prefix match.
            for i in range(network.num_layers):
                layer = network.get_layer(i)
                if layer.name.startswith(NODE_PREFIX):
                    config.set_device_type(layer, trt.DeviceType.GPU)
        if opts.layer_devices:
            wanted = dict(opts.layer_devices)
            for i in range(network.num_layers):
                layer = network.get_layer(i)
                device = wanted.pop(layer.name, None)
                if device == "dla" and opts.dla_core is None:
                    raise BackendError(f"tensorrt.layer_devices.{layer.name}: dla needs the model on a DLA device")
                if device is not None:
                    config.set_device_type(layer, trt.DeviceType.DLA if device == "dla" else trt.DeviceType.GPU)
            if wanted:
                raise BackendError(f"tensorrt.layer_devices: no layer named {', '.join(sorted(wanted))} in the network")

    def _precision(
        self, network: Any, config: Any, opts: TrtOptions, calibration: Optional[CalibrationSet], source: NetworkSource
    ) -> Any:
        trt = self.api.trt
        if opts.precision == "fp32" or self.api.major >= 11:
            # 11.x removed the precision flags: the network's own types decide (the backend
            # hands it an fp16 or Q/DQ model).
            return None
        config.set_flag(trt.BuilderFlag.FP16)
        if opts.precision == "fp16":
            return None
        config.set_flag(trt.BuilderFlag.INT8)
        if calibration is None:
            raise BackendError("calibration.images: precision int8 needs a folder of calibration images")
        inputs = self._inputs(network)
        if len(inputs) != 1:
            raise BackendError(f"calibration: int8 calibration feeds one image input; the model has {len(inputs)}")
        spec = inputs[0]
        if source.implicit_batch:  # an implicit-batch input's shape leaves the batch out
            spec = TensorSpec(spec.name, (None, *spec.shape), spec.dtype)
        path = self._state_path(
            opts, "calibration", f"{self.api.version_string}-{source.digest()[:16]}-{calibration.digest()}.cache"
        )
        if path is None:
            raise BackendError(
                "int8 calibration needs a state directory for its cache (BuildOptions.extra['state_dir'])"
            )
        calibrator = make_calibrator(self.api, self.cuda, calibration.batches(spec, opts.batch), opts.batch, path)
        config.int8_calibrator = calibrator
        return calibrator

    def _timing_cache(self, config: Any, opts: TrtOptions) -> Optional[str]:
        # Timing results are only valid for this GPU and this TensorRT: both are in the name.
        path = self._state_path(opts, "timing", f"{self.api.version_string}-{self.device_tag}.cache")
        if path is None:
            return None
        data = b""
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                data = handle.read()
        cache = config.create_timing_cache(data) if data else None
        # A damaged file, or one TensorRT refuses for this GPU (ignore_mismatch False: "a failure
        # will be reported if the CUDA device property in the provided cache is different",
        # NvInfer.h v10.3.0, setTimingCache), is replaced by a fresh cache, never half-used.
        if cache is None or not config.set_timing_cache(cache, False):
            if data:
                log.warning("timing cache %s is unusable here; starting a new one", path)
            cache = config.create_timing_cache(b"")
            if cache is None or not config.set_timing_cache(cache, False):
                raise BackendError("TensorRT could not create an empty timing cache")
        if opts.require_timing_cache_hits:
            if self.api.major < 10:
                raise BackendError(
                    f"require_timing_cache_hits needs TensorRT 10 or newer, not {self.api.version_string}"
                )
            # Every tactic must come from the cache: proves reuse (tools/hw-validate).
            config.set_flag(self.api.trt.BuilderFlag.ERROR_ON_TIMING_CACHE_MISS)
        return path

    def _state_path(self, opts: TrtOptions, kind: str, name: str) -> Optional[str]:
        if not opts.state_dir:
            return None
        return os.path.join(opts.state_dir, "tensorrt", kind, re.sub(r"[^A-Za-z0-9_.-]+", "_", name))
