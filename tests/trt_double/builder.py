"""Builder of the TensorRT test double: enforces the documented build invariants and writes
a plan that records what was built (version, device, DLA core, placement, ONNX bytes)."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, Dict, List, Optional

import numpy as np

from tests.trt_double.build import IBuilderConfig, INetworkDefinition, IOptimizationProfile, read_device
from tests.trt_double.memory import current_device
from tests.trt_double.surface import Guarded

MAGIC = b"TRTDOUBLE\0"


def pack_plan(header: Dict[str, Any], onnx_bytes: bytes) -> bytes:
    head = json.dumps(header, sort_keys=True).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + onnx_bytes


def unpack_plan(plan: bytes) -> Optional[tuple]:  # type: ignore[type-arg]
    if not plan.startswith(MAGIC):
        return None
    (size,) = struct.unpack_from("<I", plan, len(MAGIC))
    start = len(MAGIC) + 4
    return json.loads(plan[start : start + size].decode()), plan[start + size :]


class IHostMemory(Guarded):
    _trt_class = "IHostMemory"

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __bytes__(self) -> bytes:
        return self._data

    nbytes = property(lambda self: len(self._data))


class Builder(Guarded):
    _trt_class = "Builder"

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self._double.loggers.append(logger)

    num_DLA_cores = property(lambda self: self._double.dla_cores)
    platform_has_fast_fp16 = property(lambda self: True)
    # Implicit-batch networks only (8.x): the largest batch the engine runs.
    max_batch_size = property(
        lambda self: getattr(self, "_max_batch", 1), lambda self, v: object.__setattr__(self, "_max_batch", int(v))
    )

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return self._double.bind("INetworkDefinition")(self._trt, int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return self._double.bind("IBuilderConfig")(self._trt)  # type: ignore[no-any-return]

    def create_optimization_profile(self) -> IOptimizationProfile:
        return self._double.bind("IOptimizationProfile")()  # type: ignore[no-any-return]

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> Optional[IHostMemory]:
        double, trt = self._double, self._trt
        double.device_calls.append(("build", current_device()))
        log = double.log
        finalize = getattr(network, "_finalize", None)
        problem = finalize() if finalize is not None else None
        if problem:
            log("ERROR", problem)
            return None
        if network._model is None:
            log("ERROR", "Network has no layers (was the ONNX model parsed?)")
            return None
        explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
        implicit = explicit is not None and double.major < 10 and not network._flags & (1 << int(explicit))
        profiles = [] if implicit else self._profiles(network, config)
        if profiles is None:
            return None
        placement = self._place(network, config, profiles)
        if placement is None:
            return None
        calibrated = self._calibrate(network, config)
        if calibrated is False:
            return None
        if not self._monitor(config):
            log("ERROR", "Build cancelled by the progress monitor")
            return None
        if config._timing is not None:
            entries = config._timing._entries
            keys = [f"{double.compute}:{layer.name}" for layer in network._layers if not layer._host]
            misses = [key for key in keys if key not in entries]
            miss_flag = getattr(trt.BuilderFlag, "ERROR_ON_TIMING_CACHE_MISS", None)
            if misses and miss_flag is not None and config.get_flag(miss_flag):
                # "Emit error when a tactic being timed is not present in the timing cache" (NvInfer.h v10.3.0).
                log("ERROR", f"Timing cache miss for {misses[0].split(':', 1)[1]} with ERROR_ON_TIMING_CACHE_MISS set")
                return None
            entries.update({key: 0.01 for key in misses})
            log("INFO", f"Timing cache: {len(keys) - len(misses)} hits, {len(misses)} misses")
        header = {
            "trt": double.version_string,
            "compute": list(double.compute),
            "dla_core": config._dla_core if any(d != "gpu" for _, d, _ in placement) else None,
            "placement": placement,
            "profiles": profiles,
            "implicit_batch": self.max_batch_size if implicit else None,
            "flags": sorted(f.name for f in config._flags),
            "calibration": calibrated.splitlines()[0] if calibrated else None,
            "calibration_table": calibrated or None,  # read by precision.py
            "detailed": config._verbosity == trt.ProfilingVerbosity.DETAILED,
            "pools": config._pools,
        }
        return double.bind("IHostMemory")(pack_plan(header, network._model.SerializeToString()))

    def _profiles(self, network: INetworkDefinition, config: IBuilderConfig) -> Optional[List[Dict[str, Any]]]:
        """Each profile's min/opt/max per dynamic input; every profile must cover every one
        (IOptimizationProfile, NvInferRuntime.h: "all dynamic inputs ... in each profile")."""
        dynamic = [t.name for t in network._inputs if -1 in t.shape]
        if dynamic and not config._profiles:
            self._double.log(
                "ERROR", "Network has dynamic or shape inputs, but no optimization profile has been defined."
            )
            return None
        profiles = []
        for index, profile in enumerate(config._profiles if dynamic else []):
            missing = [name for name in dynamic if name not in profile._shapes]
            if missing:
                self._double.log("ERROR", f"Optimization profile {index} has no shapes for input {missing[0]}")
                return None
            profiles.append({name: [list(s) for s in profile._shapes[name]] for name in dynamic})
        return profiles

    def _place(
        self, network: INetworkDefinition, config: IBuilderConfig, profiles: List[Dict[str, Any]]
    ) -> Optional[List[Any]]:
        double, trt = self._double, self._trt
        fallback = config.get_flag(trt.BuilderFlag.GPU_FALLBACK)
        placement = []
        for layer in network._layers:
            if layer._host:
                continue
            device = config.get_device_type(layer)
            if device == trt.DeviceType.DLA:
                if not 0 <= config._dla_core < double.dla_cores:
                    double.log("ERROR", f"Cannot create DLA engine, DLA core {config._dla_core} not available")
                    return None
                if any(lo != hi for profile in profiles for lo, _, hi in profile.values()):
                    double.log("ERROR", f"{layer.name}: DLA only supports static shapes (min == max in the profile)")
                    return None
                if not config.can_run_on_DLA(layer):
                    if not fallback:
                        double.log(
                            "ERROR", f"{layer.name} ({layer.type}) cannot run on DLA and GPU fallback is not enabled"
                        )
                        return None
                    double.log("WARNING", f"Layer '{layer.name}' is not supported on DLA, falling back to GPU.")
                    device = trt.DeviceType.GPU
            placement.append([layer.name, "dla" if device == trt.DeviceType.DLA else "gpu", layer.type])
        return placement

    def _calibrate(self, network: INetworkDefinition, config: IBuilderConfig) -> Any:
        """None without INT8; the calibration table (cache text) otherwise; False on failure."""
        double, trt = self._double, self._trt
        if double.major >= 11 or not config.get_flag(trt.BuilderFlag.INT8):
            return None
        calibrator = config._calibrator
        if calibrator is None:
            double.log("ERROR", "Calibration failure occurred with no scaling factors detected (no int8 calibrator)")
            return False
        header = f"TRT-{double.version_string.replace('.', '')}-EntropyCalibration2"
        cache = calibrator.read_calibration_cache()
        if cache and bytes(cache).decode().startswith(header):
            double.calibration_batches.append(0)
            return bytes(cache).decode()
        tensor = network._inputs[0]
        batch = calibrator.get_batch_size()
        shape = (batch, *tensor.shape[1:])
        dtype = np.float16 if tensor.dtype == trt.DataType.HALF else np.float32
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        amax, count = 0.0, 0
        while True:
            pointers = calibrator.get_batch([tensor.name])
            if not pointers:
                break
            data = read_device(int(pointers[0]), nbytes, current_device()).view(dtype)
            amax = max(amax, float(np.abs(data).max()))
            count += 1
        double.calibration_batches.append(count)
        if count == 0:
            double.log("ERROR", "Calibration failure occurred with no scaling factors detected (no batches)")
            return False
        scale = struct.unpack(">I", struct.pack(">f", amax / 127.0))[0]
        digest = hashlib.sha256(network._model.SerializeToString()).hexdigest()[:8]
        table = f"{header}\n{tensor.name}: {scale:08x}\nmodel: {digest}\n"
        calibrator.write_calibration_cache(table.encode())
        return table

    def _monitor(self, config: IBuilderConfig) -> bool:
        monitor = config._monitor
        if monitor is None:
            return True
        phases = ["Building engine", "Tactic selection", "Serialization"]
        monitor.phase_start(phases[0], None, len(phases) - 1)
        for step, phase in enumerate(phases[1:]):
            monitor.phase_start(phase, phases[0], 1)
            monitor.phase_finish(phase)
            if not monitor.step_complete(phases[0], step):
                return False
        monitor.phase_finish(phases[0])
        return True
