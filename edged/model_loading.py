"""From a configured model to a pipeline ready to start: the device placement chose, the
plan (cached or built, with a DLA-to-GPU fallback), admitted by the accuracy gate (with its
precision ladder, edged.accuracy.admission), a measured profile fed back to placement, and
one engine instance per device the model was placed on, or its configured ``instances`` on
one cpu or gpu device."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edged.accuracy.admission import PlanGate
from edged.backends import BuildOptions, Runner, get_backend
from edged.config.model import Config, ModelConfig
from edged.errors import BackendError, BackendUnavailable, EdgedError
from edged.pipeline.folding import FoldDecision, decide_folding
from edged.pipeline.model_pipeline import ModelPipeline
from edged.pipeline.stats import ModelStats
from edged.placement.profiles import profile_from_dict
from edged.placement.service import Placer
from edged.plans import PlanKey, PlanManager, PlanProgress
from edged.platform import Platform, discover
from edged.platform.discover import probe_versions

__all__ = ["resolve_device", "build_options", "load_pipeline", "platform_for", "folding_for", "instances_for"]

log = logging.getLogger(__name__)

# The benchmark of a plan right after its first load (for placement): short, since it delays
# the model's start once per plan.
PROFILE_WARMUP_S = 0.1
PROFILE_SECONDS = 0.4

Instance = Tuple[Runner, PlanKey, str]  # runner, its plan's key, its device


def resolve_device(model: ModelConfig) -> str:
    """The concrete device a model's plan targets on this host when placement has no say."""
    if model.backend == "onnxruntime":
        return "cpu" if model.device in ("auto", "cpu") else "gpu"
    if model.backend == "opencv":
        return "cpu" if model.device in ("auto", "cpu") else model.device
    return "gpu" if model.device == "auto" else model.device


def platform_for(models: Sequence[ModelConfig]) -> Platform:
    """The platform that serves ``models``, discovered once at start."""
    if any(resolve_device(m) != "cpu" for m in models):
        return discover()
    # CPU-only configs never touch CUDA: a GPU context would cost >100 MB of RAM.
    return discover(versions=lambda: probe_versions(cuda=False), gpu_probe=list)


def instances_for(model: ModelConfig, device: Optional[str] = None) -> Tuple[int, str]:
    """How many engines serve ``model`` on ``device`` (default: its configured device
    resolved), and why: its ``instances``, or the backend's choice where that is 0."""
    if model.instances > 0:
        return model.instances, "as configured"
    try:
        backend = get_backend(model.backend)
    except BackendUnavailable as exc:
        return 1, str(exc)
    return backend.default_instances(model.threads, device or resolve_device(model))


def folding_for(model: ModelConfig, precision: Optional[str] = None) -> FoldDecision:
    """Whether ``model``'s preprocessing goes into its plans here (the same answer for the
    daemon and `edged plan`, so both find the same plans)."""
    try:
        backend = get_backend(model.backend)
        version = backend.version()
    except BackendUnavailable as exc:
        return FoldDecision(None, str(exc))
    # At batch 1 the prefix of one frame is a sliver of the call, and folded it adds no host
    # time to each frame's latency: the plan keeps it (docs/preprocessing.md).
    device = resolve_device(model)
    kept = backend.core_kept(model.threads, device, instances_for(model, device)[0]) if model.batch > 1 else ""
    return decide_folding(model, model.backend, version, precision or model.precision, kept)


def build_options(
    model: ModelConfig, state_dir: Optional[str] = None, device: Optional[str] = None, precision: Optional[str] = None
) -> BuildOptions:
    """``state_dir`` holds TensorRT's timing and calibration caches (the plan cache dir);
    ``device`` is placement's choice (default: the config's device resolved for the backend);
    ``precision`` a step down the accuracy ladder (default: the config's)."""
    trt = model.tensorrt
    precision = precision or model.precision
    extra: Dict[str, Any] = {}
    if model.calibration and precision == "int8":
        extra["calibration_images"] = model.calibration["images"]
        extra["calibration_max_images"] = int(model.calibration.get("max_images", 0))
        # Without the fold switches: they shape no calibration sample (keys stay as they were).
        extra["preprocess"] = {
            k: v for k, v in dataclasses.asdict(model.preprocess).items() if k not in ("fold", "fold_resize")
        }
    if model.backend == "tensorrt":
        if trt.get("dla_pools_kib"):
            extra["dla_pools"] = {k: int(v) * 1024 for k, v in trt["dla_pools_kib"].items()}
        if trt.get("layer_devices"):
            extra["layer_devices"] = dict(trt["layer_devices"])
        if state_dir:
            extra["state_dir"] = state_dir
    return BuildOptions(
        precision=precision,
        device=device or resolve_device(model),
        gpu_fallback=bool(trt.get("gpu_fallback", True)) and model.gpu_fallback,
        batch=model.batch,
        threads=model.threads,
        spin_wait_us=model.spin_wait_us,
        instances=instances_for(model, device or resolve_device(model))[0],
        model_format=model.format,
        workspace_bytes=int(trt.get("workspace_mib", 1024)) << 20,
        extra=extra,
        input_prefix=folding_for(model, precision).prefix,
    )


def load_pipeline(
    plans: PlanManager,
    model: ModelConfig,
    placer: Placer,
    config: Config,
    progress: Optional[PlanProgress] = None,
    rebuild: bool = False,
) -> ModelPipeline:
    """The pipeline of ``model`` (not started) on the devices ``placer`` gives it."""
    backend = get_backend(model.backend)
    if not os.path.isfile(model.path):
        raise EdgedError(f"{model.path}: model file not found")
    state_dir = config.plans.cache_dir
    log.info("model %s: %s", model.name, folding_for(model).describe())
    count, why = instances_for(model, placer.device_for(model.name))
    if count > 1:
        log.info("model %s: %d engines (%s)", model.name, count, why)
    gate = PlanGate(plans, placer, state_dir, lambda device, step: build_options(model, state_dir, device, step))
    options = build_options(model, state_dir, placer.device_for(model.name))
    try:
        runner, key, options = gate.obtain(model, backend, options, progress, rebuild)
    except BackendError as exc:
        if not options.device.startswith("dla"):
            raise
        # A failed DLA build moves the model to the GPU; the reason stays in placer.status().
        device = placer.fall_back(model.name, options.device, str(exc))
        options = build_options(model, state_dir, device)
        runner, key, options = gate.obtain(model, backend, options, progress, rebuild)
    placer.observe(model.name, plans.layer_placement(key))
    moved_to = _profile(plans, model, runner, key, options.device, placer)
    if moved_to is not None:
        # Measured over its latency budget on a DLA: serve from the device placement chose now.
        runner.close()
        plans.release(key)
        options = build_options(model, state_dir, moved_to, options.precision)
        runner, key, options = gate.obtain(model, backend, options, progress, rebuild)
        # Profiled too, for placement's later decisions; one move per load, so no ping-pong.
        _profile(plans, model, runner, key, options.device, placer)
    instances = [(runner, key, options.device)]
    instances += _extra_instances(gate, model, backend, options, placer, rebuild)
    if len(instances) == 1:
        instances += same_device_instances(plans, model, backend, options, key)
    try:
        pipeline = ModelPipeline(
            model, runner, ModelStats(window_s=config.telemetry.window_s), [r for r, _, _ in instances[1:]]
        )
    except Exception:
        for each_runner, each_key, _ in instances:
            each_runner.close()
            plans.release(each_key)
        raise
    pipeline.plan_key = key
    pipeline.extra_plan_keys = [k for _, k, _ in instances[1:]]
    pipeline.devices = [d for _, _, d in instances]
    return pipeline


def _extra_instances(
    gate: PlanGate, model: ModelConfig, backend: Any, first: BuildOptions, placer: Placer, rebuild: bool
) -> List[Instance]:
    """Runners for the other devices placement gave ``model`` (e.g. dla1 next to dla0), at the
    precision the first one was admitted at. One that cannot be built or loaded, or that fails
    its accuracy check, is left out: the model serves on fewer engines."""
    devices = placer.devices_for(model.name)
    if devices[0] != first.device:
        return []  # the model moved (a fallback): serve it where it went
    extras: List[Instance] = []
    for device in devices[1:]:
        try:
            options = gate.options_for(device, first.precision)
            runner, key, _ = gate.obtain(model, backend, options, None, rebuild, fall_back=False)
            extras.append((runner, key, device))
        except EdgedError as exc:
            log.warning("model %s: no engine instance on %s: %s", model.name, device, exc)
    return extras


def same_device_instances(
    plans: PlanManager, model: ModelConfig, backend: Any, options: BuildOptions, key: PlanKey
) -> List[Instance]:
    """The model's ``instances`` beyond the first: more engines loaded from the same plan on
    the same device, each for its own infer thread. None on a DLA core, which runs one
    engine at a time; fewer when one cannot load (the model serves on those that did)."""
    wanted = options.instances - 1
    if wanted <= 0:
        return []
    if options.device.startswith("dla"):
        log.warning(
            "model %s: instances %d: %s runs one engine at a time; the model serves from one",
            model.name,
            options.instances,
            options.device,
        )
        return []
    extras: List[Instance] = []
    try:
        plan = plans.plan_bytes(key)
        for _ in range(wanted):
            extras.append((backend.load_plan(plan, options), key, options.device))
    except EdgedError as exc:
        log.warning("model %s: %d of %d engines loaded: %s", model.name, 1 + len(extras), options.instances, exc)
    return extras


def _profile(
    plans: PlanManager, model: ModelConfig, runner: Runner, key: PlanKey, device: str, placer: Placer
) -> Optional[str]:
    """Feed placement the plan's measured latency: a short benchmark right after the first
    load, stored in the plan's manifest so later starts reuse it. Returns the device the
    model must move to, or None."""
    estimate = placer.estimate(model.name, device)
    if estimate is None:
        return None
    doc = plans.profile(key)
    if doc is None:
        from edged.bench import measure

        timing = measure(runner, model.batch, warmup_s=PROFILE_WARMUP_S, duration_s=PROFILE_SECONDS)
        latency_ms = float(np.median(timing["samples_ms"])) if timing["samples_ms"] else estimate.latency_ms
        doc = dict(dataclasses.replace(estimate, latency_ms=latency_ms, source="measured").as_dict())
        try:
            plans.record_profile(key, doc)
        except EdgedError as exc:
            log.warning("model %s: measured profile not stored: %s", model.name, exc)
    profile = profile_from_dict(dict(doc, model=model.name, device=device))
    log.info("model %s: %.2f ms per batch on %s (measured)", model.name, profile.latency_ms, device)
    return placer.measured(profile)
