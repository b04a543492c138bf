"""One telemetry document: per-model pipeline metrics, per-device health and power.

Fields that cannot be measured here are absent, never zero; the reason is reported
once in ``unavailable``. The layout is described by the shipped ``schema.json``.
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Dict, Mapping, Optional, Tuple

from edged.model_state import ModelState, OutputRates, SourceState
from edged.telemetry.energy import CounterWindow, EnergyWindow
from edged.telemetry.health import HealthReader
from edged.telemetry.power import PowerReader, PowerSample

__all__ = ["SCHEMA_VERSION", "Snapshotter", "utc_now"]

SCHEMA_VERSION = 1


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _frames_out(model: ModelState) -> int:
    return model.counters.frames_out if model.counters is not None else 0


class Snapshotter:
    """Builds successive telemetry documents; keeps what rates and energy need between calls."""

    def __init__(
        self, device_id: str, power: Optional[PowerReader], health: Optional[HealthReader], window_s: float
    ) -> None:
        self.device_id = device_id
        self.power = power
        self.health = health
        self._rates = OutputRates()
        self._energy: Dict[str, EnergyWindow] = {}
        self._counters: Dict[str, CounterWindow] = {}
        # (model, source id) -> (time, frames_out, pipeline start) at the previous message
        self._source_marks: Dict[Tuple[str, str], Tuple[float, int, float]] = {}
        self._window_s = window_s
        self.seq = 0

    def _model_doc(self, model: ModelState, now: float) -> Dict[str, Any]:
        doc: Dict[str, Any] = {"state": model.state, "device": model.device}
        if len(model.engines) > 1:
            doc["engines"] = list(model.engines)
        if model.error:
            doc["error"] = model.error
        if model.restarts:
            doc["restarts"] = model.restarts
            if model.last_restart:
                doc["last_restart"] = model.last_restart
        if model.source is not None:
            doc["source"] = dict(model.source)
        if model.placement:
            doc["placement"] = dict(model.placement)
        if model.sink is not None:
            doc["sink"] = dict(model.sink)
        counters = model.counters
        if counters is None:
            return doc
        fps = self._rates.update(model, now)
        if fps is not None:
            doc["fps"] = fps
        if counters.batches:
            doc["batch_fill"] = counters.batch_frames / (counters.batches * model.batch)
        doc["frames"] = {"in": counters.frames_in, "out": counters.frames_out, "dropped": dict(counters.dropped)}
        doc["latency_ms"] = {stage: dict(summary) for stage, summary in model.latency_ms.items()}
        if model.sources:
            doc["sources"] = {s.id: self._source_doc(model, s, counters.started, now) for s in model.sources}
        return doc

    def _source_doc(self, model: ModelState, source: SourceState, started: float, now: float) -> Dict[str, Any]:
        doc: Dict[str, Any] = {"type": source.type, "state": source.state}
        if source.error:
            doc["error"] = source.error
        if source.retry_in_s is not None:
            doc["retry_in_s"] = source.retry_in_s
        doc["frames"] = {"in": source.frames_in, "out": source.frames_out, "dropped": dict(source.dropped)}
        key = (model.name, source.id)
        then = self._source_marks.get(key)
        self._source_marks[key] = (now, source.frames_out, started)
        if then is not None and then[2] == started and now > then[0]:
            doc["fps"] = (source.frames_out - then[1]) / (now - then[0])
        if source.detail:
            doc["detail"] = dict(source.detail)
        return doc

    def _devices(self, models: Mapping[str, ModelState], sample: Optional[PowerSample], now: float) -> Dict[str, Any]:
        devices: Dict[str, Dict[str, Any]] = {}
        for model in models.values():
            for device in model.engines or (model.device,):
                devices.setdefault(device, {"models": []})["models"].append(model.name)
        if sample is not None:
            self._counter_energy(models, devices, sample, now)
        if sample is not None and sample.total_mw is not None:
            # Rails rarely separate one accelerator from another, so energy per inference is
            # attributed per device from the board total, split by each device's share of inferences.
            all_inferences = sum(_frames_out(model) for model in models.values())
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
        self, models: Mapping[str, ModelState], devices: Dict[str, Dict[str, Any]], sample: PowerSample, now: float
    ) -> None:
        """A GPU with its own energy counter (NVML) gets energy per inference from it, over the
        inferences its engines ran (a model split over several devices counts a share on each)."""
        for device, counter in sample.energy_mj.items():
            inferences = 0.0
            for model in models.values():
                engines = model.engines or (model.device,)
                if device in engines:
                    inferences += _frames_out(model) * engines.count(device) / len(engines)
            window = self._counters.setdefault(device, CounterWindow(self._window_s))
            window.add(now, counter, inferences)
            per_inference = window.per_inference_mj()
            if per_inference is not None and device in devices:
                devices[device]["energy_per_inference_mj"] = per_inference
                devices[device]["energy_source"] = "nvml energy counter"

    def snapshot(self, models: Mapping[str, ModelState], extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        now = time.monotonic()
        self.seq += 1
        doc: Dict[str, Any] = {"schema": SCHEMA_VERSION, "ts": utc_now(), "device_id": self.device_id, "seq": self.seq}
        doc["models"] = {name: self._model_doc(model, now) for name, model in models.items()}
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
        doc["devices"] = self._devices(models, sample, now)
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
