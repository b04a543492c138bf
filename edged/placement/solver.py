"""Place several models on DLA cores and GPUs: meet every target, then least power, then balance.

Each device is a single server: a DLA core runs one loadable at a time, and GPU contexts
share the same SMs, so a model at ``fps`` keeps its device busy ``fps x latency`` of the
time (plus ``gpu_ms`` on the GPU for a DLA placement's fallback layers). A placement is
feasible when every device stays under UTILISATION_CAP and every model's latency meets its
budget. Among feasible placements the solver picks, in this order:

1. fewest unmet models, then the smallest total shortfall (for infeasible sets);
2. fewest moved models, when re-planning (a model keeps its devices if they still work);
3. least predicted power (the DLA's perf/W is 3-5x the GPU's, so this prefers the DLA);
4. fewest engine instances (each costs memory and a build);
5. lowest peak device utilisation (balance);
6. device names in a fixed order, so the same input always gives the same answer.

Options per model: any one device, or all its DLA cores together (the rate split evenly,
one engine instance per core) when one core is not enough. The search is exhaustive over
these options; edge devices serve a handful of models, so this stays small. Above
SEARCH_LIMIT combinations it places models one at a time in decreasing load instead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from edged.placement.profiles import Profile

__all__ = ["Request", "Assignment", "Placement", "place", "UTILISATION_CAP"]

UTILISATION_CAP = 0.9  # headroom for jitter, pre/post-processing copies and thermal throttling
SEARCH_LIMIT = 20_000  # ~0.4 s on a 2-core x86 host (tools/bench_placement.py); greedy beyond
BEST_EFFORT_FPS = 30.0  # assumed rate of a model with no target (a typical camera)


@dataclass(frozen=True)
class Request:
    model: str
    profiles: Mapping[str, Profile]  # device → profile, only devices the model may use
    target_fps: Optional[float] = None
    latency_budget_ms: Optional[float] = None
    excluded: Mapping[str, str] = field(default_factory=dict)  # device → why not (data)

    @property
    def fps(self) -> float:
        return self.target_fps if self.target_fps else BEST_EFFORT_FPS

    def without(self, device: str, reason: str) -> "Request":
        """This request with ``device`` ruled out (a failed DLA build, a missed budget)."""
        profiles = {d: p for d, p in self.profiles.items() if d != device}
        excluded = dict(self.excluded)
        excluded[device] = reason
        return Request(self.model, profiles, self.target_fps, self.latency_budget_ms, excluded)


@dataclass(frozen=True)
class Assignment:
    model: str
    devices: Tuple[str, ...]
    target_fps: float
    predicted_fps: float
    latency_ms: float
    power_mw: float
    met: bool
    reason: str
    excluded: Mapping[str, str] = field(default_factory=dict)

    @property
    def device(self) -> str:
        """The device the model's first (often only) engine instance runs on."""
        return self.devices[0]

    @property
    def instances(self) -> int:
        return len(self.devices)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "model": self.model,
            "devices": list(self.devices),
            "instances": self.instances,
            "target_fps": round(self.target_fps, 2),
            "predicted_fps": round(self.predicted_fps, 2),
            "latency_ms": round(self.latency_ms, 3),
            "power_mw": round(self.power_mw, 1),
            "met": self.met,
            "reason": self.reason,
            "not_on": dict(self.excluded),
        }


@dataclass
class Placement:
    assignments: Dict[str, Assignment]
    utilisation: Dict[str, float]  # device → predicted busy fraction
    shortfalls: List[str]

    @property
    def feasible(self) -> bool:
        return not self.shortfalls

    @property
    def power_mw(self) -> float:
        return sum(a.power_mw for a in self.assignments.values())

    def devices_of(self, model: str) -> Tuple[str, ...]:
        return self.assignments[model].devices

    def as_dict(self) -> Dict[str, Any]:
        return {
            "feasible": self.feasible,
            "shortfalls": list(self.shortfalls),
            "power_mw": round(self.power_mw, 1),
            "utilisation": {d: round(u, 3) for d, u in self.utilisation.items()},
            "models": {name: a.as_dict() for name, a in sorted(self.assignments.items())},
        }


Option = Tuple[str, ...]


def _over_budget(req: Request) -> Dict[str, str]:
    budget = req.latency_budget_ms
    if budget is None:
        return {}
    return {
        d: f"{p.latency_ms:.2f} ms > {budget:g} ms budget ({p.source})"
        for d, p in sorted(req.profiles.items())
        if p.latency_ms > budget
    }


def _options(req: Request, order: Sequence[str]) -> List[Option]:
    slow = _over_budget(req)
    usable = [d for d in order if d in req.profiles and d not in slow]
    options: List[Option] = [(d,) for d in usable]
    dlas = tuple(d for d in usable if d.startswith("dla"))
    if len(dlas) > 1:
        options.append(dlas)
    return options


def _load(
    requests: Sequence[Request], choice: Sequence[Option], devices: Sequence[str]
) -> Tuple[Dict[str, float], List[Dict[str, float]]]:
    """Per-device utilisation, and each request's share of it."""
    util = {d: 0.0 for d in devices}
    shares: List[Dict[str, float]] = []
    gpu = next((d for d in devices if d.startswith("gpu")), None)
    for req, option in zip(requests, choice):
        mine: Dict[str, float] = {}
        rate = req.fps / len(option)
        for device in option:
            prof = req.profiles[device]
            mine[device] = mine.get(device, 0.0) + prof.busy(rate)
            if prof.gpu_ms and gpu is not None:
                mine[gpu] = mine.get(gpu, 0.0) + rate / prof.batch * prof.gpu_ms / 1000.0
        for device, busy in mine.items():
            util[device] += busy
        shares.append(mine)
    return util, shares


def _served(
    requests: Sequence[Request], choice: Sequence[Option], devices: Sequence[str]
) -> Tuple[Dict[str, float], List[float]]:
    """Utilisation, and the fraction of its target each request gets. On an overloaded
    device the lightest models are served in full first (most targets met); the model
    that no longer fits gets what is left, the ones after it nothing."""
    util, shares = _load(requests, choice, devices)
    scale = [1.0] * len(requests)
    for device in devices:
        if util[device] <= UTILISATION_CAP + 1e-12:
            continue
        users = sorted((s[device], requests[i].model, i) for i, s in enumerate(shares) if device in s)
        left = UTILISATION_CAP
        for busy, _, i in users:
            if busy <= left + 1e-12:
                left -= busy
            else:
                scale[i] = min(scale[i], max(0.0, left) / busy)
                left = 0.0
    return util, scale


def _score(
    requests: Sequence[Request],
    choice: Sequence[Option],
    devices: Sequence[str],
    previous: Mapping[str, Option],
) -> Tuple[Any, ...]:
    util, scales = _served(requests, choice, devices)
    unmet = sum(1 for s in scales if s < 1.0 - 1e-9)
    shortfall = sum(1.0 - s for s in scales)
    power = sum(
        sum(req.profiles[d].power_at(req.fps / len(option)) for d in option) * s
        for req, option, s in zip(requests, choice, scales)
    )
    moved = sum(1 for req, option in zip(requests, choice) if req.model in previous and previous[req.model] != option)
    instances = sum(len(option) for option in choice)
    rank = [[devices.index(d) for d in option] for option in choice]
    peak = max(util.values(), default=0.0)
    return (unmet, round(shortfall, 9), moved, round(power, 6), instances, round(peak, 9), rank)


def place(
    requests: Sequence[Request],
    devices: Sequence[str],
    previous: Optional[Mapping[str, Sequence[str]]] = None,
) -> Placement:
    """Choose devices for every request; ``previous`` is the last placement (model → devices)."""
    reqs = sorted(requests, key=lambda r: r.model)
    prev = {k: tuple(v) for k, v in (previous or {}).items()}
    options = [_options(r, devices) for r in reqs]
    empty = [r for r, opts in zip(reqs, options) if not opts]
    placeable = [(r, o) for r, o in zip(reqs, options) if o]
    best: Optional[Tuple[Tuple[Any, ...], Tuple[Option, ...]]] = None
    total = 1
    for _, opts in placeable:
        total *= len(opts)
    if total <= SEARCH_LIMIT:
        for choice in itertools.product(*(o for _, o in placeable)):
            score = _score([r for r, _ in placeable], choice, devices, prev)
            if best is None or score < best[0]:
                best = (score, choice)
        chosen = best[1] if best else ()
    else:
        chosen = _greedy(placeable, devices, prev)
    return _result([r for r, _ in placeable], chosen, devices, empty, prev)


def _greedy(
    placeable: Sequence[Tuple[Request, List[Option]]], devices: Sequence[str], prev: Mapping[str, Option]
) -> Tuple[Option, ...]:
    order = sorted(
        range(len(placeable)),
        key=lambda i: -min(p.busy(placeable[i][0].fps) for p in placeable[i][0].profiles.values()),
    )
    picked: Dict[int, Option] = {}
    for i in order:
        req, opts = placeable[i]
        done = sorted(picked)
        best = min(
            opts,
            key=lambda o: _score(
                [placeable[j][0] for j in done] + [req], [picked[j] for j in done] + [o], devices, prev
            ),
        )
        picked[i] = best
    return tuple(picked[i] for i in range(len(placeable)))


def _result(
    reqs: Sequence[Request],
    chosen: Sequence[Option],
    devices: Sequence[str],
    empty: Sequence[Request],
    prev: Mapping[str, Option],
) -> Placement:
    util, scales = _served(reqs, chosen, devices)
    assignments: Dict[str, Assignment] = {}
    shortfalls: List[str] = []
    for req, option, scale in zip(reqs, chosen, scales):
        predicted = req.fps * scale
        latency = max(req.profiles[d].latency_ms for d in option)
        met = scale >= 1.0 - 1e-9
        busiest = max(option, key=lambda d: util[d])
        if met:
            reason = _why(req, option, util, prev)
        else:
            reason = f"{busiest} would be {util[busiest]:.0%} busy; {predicted:.1f} of {req.fps:g} fps fit"
            shortfalls.append(f"{req.model}: needs {req.fps:g} fps, best placement gives {predicted:.1f} ({reason})")
        power = sum(req.profiles[d].power_at(req.fps / len(option)) for d in option) * scale
        assignments[req.model] = Assignment(
            req.model, option, req.fps, predicted, latency, power, met, reason, {**req.excluded, **_over_budget(req)}
        )
    for req in empty:
        why = _no_device(req)
        shortfalls.append(f"{req.model}: cannot be placed: {why}")
        not_on = {**req.excluded, **_over_budget(req)}
        assignments[req.model] = Assignment(req.model, (), req.fps, 0.0, 0.0, 0.0, False, why, not_on)
    return Placement(assignments, util, shortfalls)


def _why(req: Request, option: Option, util: Mapping[str, float], prev: Mapping[str, Option]) -> str:
    where = " + ".join(option)
    chosen = req.profiles[option[0]]
    parts = [f"{where}: {req.fps:g} fps at {chosen.latency_ms:.2f} ms ({chosen.source})"]
    if req.latency_budget_ms is not None:
        parts.append(f"within the {req.latency_budget_ms:g} ms budget")
    slow = _over_budget(req)
    mine = chosen.power_at(req.fps)
    cheaper = [
        d for d in req.profiles if d not in option and d not in slow and req.profiles[d].power_at(req.fps) < mine
    ]
    for device in cheaper:
        if util[device] + req.profiles[device].busy(req.fps) > UTILISATION_CAP:
            parts.append(f"lower-power {device} has no room left")
        elif prev.get(req.model) == option:
            parts.append(f"kept where it was rather than moved to lower-power {device}")
        else:
            parts.append(f"lower-power {device} not used (balance)")
    if not cheaper and option[0].startswith("dla"):
        parts.append("DLA chosen for lower power")
    return "; ".join(parts)


def _no_device(req: Request) -> str:
    reasons = {**req.excluded, **_over_budget(req)}
    return "; ".join(f"{d}: {why}" for d, why in sorted(reasons.items())) or "no usable device"
