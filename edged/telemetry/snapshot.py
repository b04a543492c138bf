"""One telemetry document: per-model pipeline metrics, per-device health and power.

Fields that cannot be measured here are absent, never zero; the reason is reported
once in ``unavailable``. The layout is described by the shipped ``schema.json``.
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Dict, Mapping, Optional

from edged.model_state import ModelState, OutputRates
from edged.telemetry.energy import EnergyWindow
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
        self._window_s = window_s
        self.seq = 0

    def _model_doc(self, model: ModelState, now: float) -> Dict[str, Any]:
        doc: Dict[str, Any] = {"state": model.state, "device": model.device}
        if len(model.engines) > 1:
            doc["engines"] = list(model.engines)
        if model.error:
            doc["error"] = model.error
        if model.source is not None:
            doc["source"] = dict(model.source)
        if model.placement:
            doc["placement"] = dict(model.placement)
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
        return doc

    def _devices(self, models: Mapping[str, ModelState], sample: Optional[PowerSample], now: float) -> Dict[str, Any]:
        devices: Dict[str, Dict[str, Any]] = {}
        for model in models.values():
            for device in model.engines or (model.device,):
                devices.setdefault(device, {"models": []})["models"].append(model.name)
        if sample is not None and sample.total_mw is not None:
            # Rails rarely separate one accelerator from another, so energy per inference is
            # attributed per device from the board total, split by each device's share of inferences.
            all_inferences = sum(_frames_out(model) for model in models.values())
            window = self._energy.setdefault("board", EnergyWindow(self._window_s))
            window.add(now, sample.total_mw, all_inferences)
            per_inference = window.per_inference_mj()
            if per_inference is not None:
                for device in devices:
                    devices[device]["energy_per_inference_mj"] = per_inference
                    devices[device]["energy_source"] = "board"
        return devices

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
            utils = {"cpu": health.cpu_util_pct, "gpu": health.gpu_util_pct}
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
