"""Placement for the daemon: configured models → the device each one's plan is built for.

The daemon asks :meth:`Placer.device_for` for ``BuildOptions.device``. A DLA build that
fails, or a measured DLA profile that misses the model's latency budget, is reported back
through :meth:`Placer.fall_back` / :meth:`Placer.measured`: the model moves to the GPU,
the reason is kept as data (:meth:`Placer.fallbacks`) for status and telemetry, and the
other models stay where they are. Re-planning after a config change keeps every model
whose placement still works (see solver.py).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edged.config.model import ModelConfig
from edged.errors import PlacementError
from edged.placement.analysis import Analysis, analyse
from edged.placement.explain import ModelPolicy, allowed_devices, build_request
from edged.placement.graph import load_graph
from edged.placement.observed import reconcile
from edged.placement.profiles import ACTIVE_POWER_MW, FIXED_OVERHEAD_MS, Profile
from edged.placement.solver import Placement, Request, place
from edged.placement.target import Target, from_platform

__all__ = ["Placer", "policy_for", "local_target"]

log = logging.getLogger(__name__)

# Latency of one batch on the reference GPU assumed for a model without an ONNX graph.
UNANALYSED_MS = 5.0


def policy_for(model: ModelConfig) -> ModelPolicy:
    fps = model.target_fps
    if fps is None:
        # All sources feed the one engine: it must sustain their sum.
        rates = [float(s.plugin.get("fps") or 0) for s in model.sources]
        fps = sum(rates) if all(rates) else None
    return ModelPolicy(
        name=model.name,
        path=model.path,
        precision=model.precision,
        batch=model.batch,
        device=model.device,
        # Either switch turns fallback off, as in the build (edged.model_loading.build_options).
        gpu_fallback=model.gpu_fallback and bool(model.tensorrt.get("gpu_fallback", True)),
        max_dla_subgraphs=model.max_dla_subgraphs,
        target_fps=fps,
        latency_budget_ms=model.latency_budget_ms,
    )


def local_target(platform: Optional[Any] = None) -> Target:
    """This host (or an already discovered ``platform``) as a placement Target."""
    if platform is None:
        from edged.platform import discover

        platform = discover()
    return from_platform(platform)


class Placer:
    def __init__(self, target: Optional[Target]) -> None:
        self.target = target
        self.placement: Optional[Placement] = None
        self.analyses: Dict[str, Analysis] = {}
        self._requests: Dict[str, Request] = {}
        self._fixed: Dict[str, str] = {}  # models placed by rule, not by the solver
        self._notes: Dict[str, str] = {}
        self._differences: Dict[str, List[Dict[str, str]]] = {}
        self._fell_back: Dict[str, Tuple[str, str]] = {}  # model → (device it left, why)
        self._accuracy: Dict[str, Dict[str, Any]] = {}  # model → the accuracy gate's outcome

    # -- planning -----------------------------------------------------------------------

    def plan(self, models: Sequence[ModelConfig]) -> None:
        """(Re)place ``models``; models whose placement still works do not move."""
        previous = {n: a.devices for n, a in self.placement.assignments.items()} if self.placement else {}
        self._fixed.clear()
        requests: List[Request] = []
        for model in models:
            if model.backend != "tensorrt":
                # ONNX Runtime has no DLA: CPU unless the config asks for its CUDA provider.
                self._fixed[model.name] = "cpu" if model.device in ("auto", "cpu") else "gpu"
                continue
            if self.target is None or self.target.trt_version is None:
                self._fixed[model.name] = {"auto": "gpu", "dla": "dla0"}.get(model.device, model.device)
                known = "platform unknown" if self.target is None else f"no TensorRT on {self.target.name}"
                self._notes[model.name] = f"{known}: device taken from the config"
                continue
            request = self._request(model, self._requests.get(model.name))
            if request is not None:
                requests.append(request)
        self._requests = {r.model: r for r in requests}
        self._solve(previous)

    def _request(self, model: ModelConfig, old: Optional[Request]) -> Optional[Request]:
        assert self.target is not None
        policy = policy_for(model)
        if model.format.type != "onnx":
            return self._unanalysed_request(model, policy)
        try:
            graph = load_graph(policy.path, policy.batch)
        except PlacementError as exc:
            self._fixed[model.name] = "gpu"
            self._notes[model.name] = f"not analysed ({exc}); GPU"
            log.warning("model %s: %s", model.name, self._notes[model.name])
            return None
        analysis = analyse(
            graph,
            precision=policy.precision,
            trt_version=self.target.trt_version or "10.3",
            dla_generation=self.target.dla_generation,
            model=policy.name,
            max_dla_subgraphs=policy.max_dla_subgraphs,
            gpu_fallback=policy.gpu_fallback,
        )
        self.analyses[model.name] = analysis
        request = build_request(policy, analysis, self.target)
        if old is not None:
            # Keep what builds and measurements taught us about this model.
            for device, why in old.excluded.items():
                if device not in request.excluded and device in request.profiles:
                    request = request.without(device, why)
            measured = {d: p for d, p in old.profiles.items() if p.source == "measured" and d in request.profiles}
            if measured:
                profiles = dict(request.profiles)
                profiles.update(measured)
                request = Request(
                    request.model, profiles, request.target_fps, request.latency_budget_ms, request.excluded
                )
        if model.device in ("dla0", "dla1") and model.device not in self.target.devices():
            request = request.without(model.device, f"{self.target.name} has {self.target.dla_cores} DLA core(s)")
            self._notes[model.name] = f"{model.device} requested but not present"
        return request

    def _unanalysed_request(self, model: ModelConfig, policy: ModelPolicy) -> Request:
        """Caffe, UFF and network-builder models have no ONNX graph to analyse: they go to a
        GPU (spread over several by the same objective), at a nominal cost until measured."""
        assert self.target is not None
        devices = self.target.devices()
        excluded = allowed_devices(policy, devices)
        for device in devices:
            if device.startswith("dla"):
                excluded.setdefault(device, f"{model.format.type} models are not analysed for the DLA")
        profiles = {
            d: Profile(
                model.name,
                d,
                FIXED_OVERHEAD_MS + UNANALYSED_MS / self.target.speed_of(d),
                ACTIVE_POWER_MW["cpu" if d == "cpu" else "gpu"],
                batch=policy.batch,
            )
            for d in devices
            if d not in excluded
        }
        self._notes[model.name] = f"{model.format.type} model: GPU only, nominal {UNANALYSED_MS:g} ms until measured"
        return Request(policy.name, profiles, policy.target_fps, policy.latency_budget_ms, excluded)

    def _solve(self, previous: Dict[str, Tuple[str, ...]]) -> None:
        if self.target is None:
            self.placement = None
            return
        self.placement = place(list(self._requests.values()), self.target.devices(), previous)
        for line in self.placement.shortfalls:
            log.warning("placement: %s", line)

    # -- results ------------------------------------------------------------------------

    def device_for(self, model: str) -> str:
        """The device for ``BuildOptions.device``: gpu, gpuN, dla0, dla1 or cpu."""
        if model in self._fixed:
            return self._fixed[model]
        if self.placement is None or model not in self.placement.assignments:
            raise PlacementError(f"model {model}: not planned")
        assignment = self.placement.assignments[model]
        if assignment.devices:
            return assignment.device
        request = self._requests.get(model)
        if request is None or not request.profiles:
            raise PlacementError(f"model {model}: no device: {assignment.reason}")
        # No device meets the model's demands (the solver named the shortfall): it still
        # serves, on the device where it comes closest, rather than not at all.
        return min(request.profiles.values(), key=lambda p: (p.latency_ms, p.device)).device

    def devices_for(self, model: str) -> Tuple[str, ...]:
        """Every device placement runs ``model`` on, one engine instance each; the first is
        :meth:`device_for`'s."""
        first = self.device_for(model)
        assignment = self.placement.assignments.get(model) if self.placement and model not in self._fixed else None
        if assignment is not None and assignment.devices and assignment.devices[0] == first:
            return tuple(assignment.devices)
        return (first,)

    def fallbacks(self, model: str) -> Dict[str, str]:
        """Devices ruled out for ``model`` and why (for status and telemetry)."""
        request = self._requests.get(model)
        return dict(request.excluded) if request else {}

    def status(self, model: str) -> Dict[str, Any]:
        """device and not_on; where they apply, error, note, reason, differs_from_prediction,
        fell_back_from (the device left at run time, its reason in not_on) and accuracy (the
        accuracy gate's outcome for the serving plan, with the plans it refused)."""
        doc: Dict[str, Any] = {"device": None, "not_on": self.fallbacks(model)}
        try:
            doc["device"] = self.device_for(model)
        except PlacementError as exc:
            doc["error"] = str(exc)
        if model in self._notes:
            doc["note"] = self._notes[model]
        if self.placement and model in self.placement.assignments:
            doc["reason"] = self.placement.assignments[model].reason
        if self._differences.get(model):
            doc["differs_from_prediction"] = list(self._differences[model])
        left = self._fell_back.get(model)
        if left is not None:
            doc["fell_back_from"] = left[0]
            # A model placed by rule has no request to keep the reason in.
            doc["not_on"].setdefault(left[0], left[1])
        if model in self._accuracy:
            doc["accuracy"] = dict(self._accuracy[model])
        return doc

    # -- feedback -----------------------------------------------------------------------

    def observe(self, model: str, report: Optional[List[Dict[str, Any]]], source: str = "inspector") -> int:
        """Take where a built engine's layers really ran (``BuiltPlan.layer_placement``):
        the report replaces the prediction; returns how many layers differed."""
        analysis = self.analyses.get(model)
        if analysis is None or not report:
            return 0
        self.analyses[model], diffs = reconcile(analysis, report, source)
        self._differences[model] = [d.as_dict() for d in diffs]
        return len(diffs)

    def fall_back(self, model: str, device: str, reason: str) -> str:
        """``device`` failed for ``model`` (a DLA build error): rule it out (every DLA core, for
        a DLA), re-place, and return the new device. Other models keep their devices."""
        log.warning("model %s: leaving %s: %s", model, device, reason)
        self._fell_back[model] = (device, reason)
        request = self._requests.get(model)
        if request is None:
            self._fixed[model] = "gpu"
            self._notes[model] = f"{device} failed: {reason}; GPU"
            return "gpu"
        # DLA cores are identical and share one compiler: what fails on one fails on all.
        same = [d for d in request.profiles if d.startswith("dla")] if device.startswith("dla") else [device]
        for each in same or [device]:
            request = request.without(each, reason)
        self._requests[model] = request
        previous = {n: a.devices for n, a in self.placement.assignments.items() if n != model} if self.placement else {}
        self._solve(previous)
        return self.device_for(model)

    def record_accuracy(self, model: str, outcome: Optional[Dict[str, Any]]) -> None:
        """The accuracy gate's outcome for ``model``'s serving plan (edged.accuracy.admission);
        None: its plan needed no check."""
        if outcome is None:
            self._accuracy.pop(model, None)
        else:
            self._accuracy[model] = dict(outcome)

    def estimate(self, model: str, device: str) -> Optional[Profile]:
        """The profile placement works with for ``model`` on ``device`` (None: the model was
        placed by rule, so a measurement would not change anything)."""
        request = self._requests.get(model)
        return request.profiles.get(device) if request is not None else None

    def measured(self, profile: Profile) -> Optional[str]:
        """Record a measured profile; returns the new device when it forces a move (a DLA
        plan over the latency budget), else None."""
        request = self._requests.get(profile.model)
        if request is None:
            return None
        profiles = dict(request.profiles)
        profiles[profile.device] = profile
        self._requests[profile.model] = request = Request(
            request.model, profiles, request.target_fps, request.latency_budget_ms, request.excluded
        )
        budget = request.latency_budget_ms
        # Only a DLA plan moves for its budget: the GPU is where everything falls back to.
        if budget is not None and profile.latency_ms > budget and profile.device.startswith("dla"):
            why = f"measured {profile.latency_ms:.2f} ms > budget {budget:g} ms"
            return self.fall_back(profile.model, profile.device, why)
        before = self.device_for(profile.model)
        self._solve({n: a.devices for n, a in self.placement.assignments.items()} if self.placement else {})
        after = self.device_for(profile.model)
        return after if after != before else None
