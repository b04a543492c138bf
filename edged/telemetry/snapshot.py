"""One telemetry document: per-model pipeline metrics, per-device health and power.

Fields that cannot be measured here are absent, never zero; the reason is reported
once in ``unavailable``. The layout is described by the shipped ``schema.json``.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from edged.pipeline.stats import STAGES, ModelStats
from edged.telemetry.energy import CounterWindow, EnergyWindow
from edged.telemetry.health import HealthReader
from edged.telemetry.power import PowerReader, PowerSample

__all__ = ["SCHEMA_VERSION", "ModelView", "Snapshotter", "utc_now"]

SCHEMA_VERSION = 1


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ModelView:
    """What the snapshot needs to know of one model."""

    name: str
    device: str  # cpu | gpu | dla0 | dla1 ...
    batch: int
    state: str
    stats: Optional[ModelStats]
    error: Optional[str] = None
    source: Optional[Dict[str, Any]] = None  # state and counters of sources that report them
    placement: Optional[Dict[str, Any]] = None  # why this device: reason, note, not_on, fell_back_from
    engines: Tuple[str, ...] = ()  # the device of each engine instance, when there are several


def _latency(stats: ModelStats, now: float) -> Dict[str, Dict[str, float]]:
    out = {}
    for stage in STAGES:
        hist = stats.latency[stage].snapshot(now)
        if hist.count:
            summary = hist.summary()
            out[stage] = {k: float(v) for k, v in summary.items() if v is not None and k != "count"}
            out[stage]["count"] = float(hist.count)
    return out


def _frames_out(view: ModelView) -> int:
    return int(view.stats.counters()["frames_out"]) if view.stats is not None else 0


class Snapshotter:
    """Builds successive telemetry documents; keeps what rates and energy need between calls."""

    def __init__(
        self, device_id: str, power: Optional[PowerReader], health: Optional[HealthReader], window_s: float
    ) -> None:
        self.device_id = device_id
        self.power = power
        self.health = health
        self._marks: Dict[str, tuple] = {}  # type: ignore[type-arg]
        self._energy: Dict[str, EnergyWindow] = {}
        self._counters: Dict[str, CounterWindow] = {}
        self._window_s = window_s
        self.seq = 0

    def _model_doc(self, view: ModelView, now: float) -> Dict[str, Any]:
        doc: Dict[str, Any] = {"state": view.state, "device": view.device}
        if len(view.engines) > 1:
            doc["engines"] = list(view.engines)
        if view.error:
            doc["error"] = view.error
        if view.source is not None:
            doc["source"] = view.source
        if view.placement:
            doc["placement"] = view.placement
        if view.stats is None:
            return doc
        counters = view.stats.counters()
        frames_out = int(counters["frames_out"])
        then = self._marks.get(view.name)
        self._marks[view.name] = (now, frames_out)
        if then is not None and now > then[0]:
            doc["fps"] = (frames_out - then[1]) / (now - then[0])
        batches = int(counters["batches"])
        if batches:
            doc["batch_fill"] = int(counters["batch_frames"]) / (batches * view.batch)
        doc["frames"] = {
            "in": counters["frames_in"],
            "out": frames_out,
            "dropped": dict(counters["dropped"]),
        }
        doc["latency_ms"] = _latency(view.stats, now)
        return doc

    def _devices(self, views: Mapping[str, ModelView], sample: Optional[PowerSample], now: float) -> Dict[str, Any]:
        devices: Dict[str, Dict[str, Any]] = {}
        for view in views.values():
            for device in view.engines or (view.device,):
                devices.setdefault(device, {"models": []})["models"].append(view.name)
        if sample is not None:
            self._counter_energy(views, devices, sample, now)
        if sample is not None and sample.total_mw is not None:
            # Rails rarely separate one accelerator from another, so energy per inference is
            # attributed per device from the board total, split by each device's share of inferences.
            all_inferences = sum(_frames_out(view) for view in views.values())
            window = self._energy.setdefault("board", EnergyWindow(self._window_s))
            window.add(now, sample.total_mw, all_inferences)
            per_inference = window.per_inference_mj()
            if per_inference is not None:
                for device in devices:
                    if "energy_per_inference_mj" in devices[device]:
                        continue  # the device's own counter answered
                    devices[device]["energy_per_inference_mj"] = per_inference
                    devices[device]["energy_source"] = "board"
        return devices

    def _counter_energy(
        self, views: Mapping[str, ModelView], devices: Dict[str, Dict[str, Any]], sample: PowerSample, now: float
    ) -> None:
        """A GPU with its own energy counter (NVML) gets energy per inference from it, over the
        inferences its engines ran (a model split over several devices counts a share on each)."""
        for device, counter in sample.energy_mj.items():
            inferences = 0.0
            for view in views.values():
                engines = view.engines or (view.device,)
                if device in engines:
                    inferences += _frames_out(view) * engines.count(device) / len(engines)
            window = self._counters.setdefault(device, CounterWindow(self._window_s))
            window.add(now, counter, inferences)
            per_inference = window.per_inference_mj()
            if per_inference is not None and device in devices:
                devices[device]["energy_per_inference_mj"] = per_inference
                devices[device]["energy_source"] = "nvml energy counter"

    def snapshot(self, views: Mapping[str, ModelView], extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        now = time.monotonic()
        self.seq += 1
        doc: Dict[str, Any] = {"schema": SCHEMA_VERSION, "ts": utc_now(), "device_id": self.device_id, "seq": self.seq}
        doc["models"] = {name: self._model_doc(view, now) for name, view in views.items()}
        unavailable: Dict[str, str] = {}
        sample = None
        if self.power is not None:
            sample = self.power.read(now)
            if sample.rails_mw:
                doc["power"] = {
                    "source": self.power.spec.source,
                    "rails_mw": sample.rails_mw,
                    "total_mw": sample.total_mw,
                }
            elif self.power.spec.reason:
                unavailable["power"] = self.power.spec.reason
        doc["devices"] = self._devices(views, sample, now)
        if self.health is not None:
            health = self.health.read()
            if health.temps_c:
                doc["temps_c"] = health.temps_c
            if health.temps_offline:
                doc["temps_offline"] = health.temps_offline
            for what, why in health.unavailable.items():
                unavailable.setdefault(what, why)
            utils = {"cpu": health.cpu_util_pct, "gpu": health.gpu_util_pct, **health.gpu_util_by_device}
            for device, value in utils.items():
                if value is not None:
                    doc["devices"].setdefault(device, {"models": []})["util_pct"] = value
            for dla, active in health.dla_active.items():
                doc["devices"].setdefault(dla, {"models": []})["active"] = active
        if unavailable:
            doc["unavailable"] = unavailable
        if extra:
            doc.update(extra)
        return doc
