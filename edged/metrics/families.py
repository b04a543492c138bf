"""The metric families of one scrape, from a running-state snapshot and a telemetry document.

Names and units follow Prometheus' conventions (https://prometheus.io/docs/practices/naming/):
an ``edged_`` prefix, base units (seconds, watts, joules, celsius, ratios), ``_total`` on
counters, and labels for what varies (model, stage, reason, device, rail, zone). Latencies are
histograms of cumulative buckets, which a fleet can sum across devices before taking a
quantile; windowed percentiles cannot be combined. Each family is described in
docs/metrics.md. What cannot be measured here is left out, never reported as zero.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from edged import __version__
from edged.model_state import ModelState, RunningState
from edged.mqtt.link import MqttLink
from edged.pipeline.stats import CumulativeLatency

__all__ = ["HELP", "MODEL_STATES", "families", "model_state_word"]

# Every state a model can be in: its plan's steps (edged/plans/manager.py PlanProgress), then
# its pipeline's (edged/pipeline/model_pipeline.py). Each is exported, 1 for the current one,
# so that an alert on ``edged_model_state{state="failed"} == 1`` has a series to watch.
MODEL_STATES = ("pending", "checking", "building", "ready", "created", "running", "draining", "stopped", "failed")

# Every family and its help text (counters without their _total suffix, which the client
# adds to the sample); docs/metrics.md describes each one, and a test holds them together.
HELP: Dict[str, str] = {
    "edged_model_state": "1 for the state each model is in, 0 for the others.",
    "edged_model_engines": "Engine instances of each model per device placement put them on.",
    "edged_model_restarts": "Pipelines replaced because a worker was stuck.",
    "edged_model_frames_in": "Frames read from the source.",
    "edged_model_frames_out": "Frames inferred and written to the sink; rate() is the throughput.",
    "edged_model_frames_dropped": "Frames dropped, by reason.",
    "edged_model_batches": "Inference batches run.",
    "edged_model_batch_frames": "Frames in those batches (batch fill = this / batches / batch size).",
    "edged_model_sink_held_bytes": "Results held in memory because the sink cannot write them (a full disk).",
    "edged_model_latency_seconds": "Per-frame latency of each pipeline stage since the pipeline began.",
    "edged_source_state": "1 for the state each model's video source reports (playing, reconnecting, ...).",
    "edged_source_reconnects": "Reconnections of the source.",
    "edged_source_outages": "Times the source went down.",
    "edged_source_outage_seconds": "Time the source spent down.",
    "edged_power_watts": "Power of each monitored rail.",
    "edged_board_power_watts": "The board's total power: its input rail where it has one, else the sum of its rails.",
    "edged_device_energy_per_inference_joules": "Energy per inference on each device over the telemetry window.",
    "edged_device_utilization_ratio": "Busy share of each device (cpu, gpu).",
    "edged_dla_active": "1 while the DLA core is powered (runtime PM active).",
    "edged_temperature_celsius": "Temperature of each thermal zone.",
    "edged_build_info": "Always 1; the running edged's version.",
    "edged_config_version": "Version of the config in force; source: file or pushed.",
    "edged_plan_builds": "Plan builds since start, by result (built, failed).",
    "edged_plan_build_seconds": "Time spent building plans since start.",
    "edged_mqtt_connected": "1 while the MQTT link is connected to the broker.",
    "edged_mqtt_connects": "Connections made to the broker since start.",
    "edged_mqtt_messages_dropped": "Messages dropped because the outgoing buffer was full (broker unreachable).",
}


def _gauge(name: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, HELP[name], labels=labels)


def _counter(name: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, HELP[name], labels=labels)


def _histogram(name: str, labels: Sequence[str] = ()) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, HELP[name], labels=labels)


def model_state_word(state: str) -> str:
    """``building plan 40% 12s`` -> ``building``: the state without its progress."""
    return state.split(" ", 1)[0] if state else "pending"


def _seconds_buckets(totals: CumulativeLatency) -> List[Tuple[str, float]]:
    return [("+Inf" if math.isinf(le) else repr(le / 1000.0), float(n)) for le, n in totals.cumulative()]


def _models(models: Mapping[str, ModelState]) -> Iterable[Metric]:
    state = _gauge("edged_model_state", ["model", "state"])
    engines = _gauge("edged_model_engines", ["model", "device"])
    restarts = _counter("edged_model_restarts", ["model"])
    frames_in = _counter("edged_model_frames_in", ["model"])
    frames_out = _counter("edged_model_frames_out", ["model"])
    dropped = _counter("edged_model_frames_dropped", ["model", "reason"])
    batches = _counter("edged_model_batches", ["model"])
    batch_frames = _counter("edged_model_batch_frames", ["model"])
    held = _gauge("edged_model_sink_held_bytes", ["model"])
    latency = _histogram("edged_model_latency_seconds", ["model", "stage"])
    for name, model in models.items():
        current = model_state_word(model.state)
        for word in MODEL_STATES + (() if current in MODEL_STATES else (current,)):
            state.add_metric([name, word], 1.0 if word == current else 0.0)
        for device in sorted(set(model.engines or (model.device,))):
            engines.add_metric([name, device], float((model.engines or (model.device,)).count(device)))
        restarts.add_metric([name], float(model.restarts))
        counters = model.counters
        if counters is None:
            continue
        frames_in.add_metric([name], float(counters.frames_in))
        frames_out.add_metric([name], float(counters.frames_out))
        for reason, n in sorted(counters.dropped.items()):
            dropped.add_metric([name, reason], float(n))
        batches.add_metric([name], float(counters.batches))
        batch_frames.add_metric([name], float(counters.batch_frames))
        held.add_metric([name], float(model.sink["held_bytes"]) if model.sink else 0.0)
        for stage, totals in model.latency_totals.items():
            latency.add_metric([name, stage], _seconds_buckets(totals), totals.total_ms / 1000.0)
    return (state, engines, restarts, frames_in, frames_out, dropped, batches, batch_frames, held, latency)


def _sources(models: Mapping[str, ModelState]) -> Iterable[Metric]:
    state = _gauge("edged_source_state", ["model", "source", "state"])
    reconnects = _counter("edged_source_reconnects", ["model", "source"])
    outages = _counter("edged_source_outages", ["model", "source"])
    outage = _counter("edged_source_outage_seconds", ["model", "source"])
    for name, model in models.items():
        for source in model.sources:  # every source of the model (docs/sources.md)
            labels = [name, source.id]
            state.add_metric([*labels, source.state], 1.0)
            for family, key in ((reconnects, "reconnects"), (outages, "outages"), (outage, "outage_s")):
                value = source.detail.get(key)
                if isinstance(value, (int, float)):
                    family.add_metric(labels, float(value))
    return (state, reconnects, outages, outage)


def _device(doc: Mapping[str, Any]) -> Iterable[Metric]:
    rails = _gauge("edged_power_watts", ["rail"])
    board = _gauge("edged_board_power_watts")
    power = doc.get("power") or {}
    for rail, mw in sorted((power.get("rails_mw") or {}).items()):
        rails.add_metric([rail], mw / 1000.0)
    if power.get("total_mw") is not None:
        board.add_metric([], power["total_mw"] / 1000.0)
    energy = _gauge("edged_device_energy_per_inference_joules", ["device", "source"])
    util = _gauge("edged_device_utilization_ratio", ["device"])
    dla = _gauge("edged_dla_active", ["device"])
    for device, entry in sorted((doc.get("devices") or {}).items()):
        if entry.get("energy_per_inference_mj") is not None:
            energy.add_metric([device, entry.get("energy_source", "")], entry["energy_per_inference_mj"] / 1000.0)
        if entry.get("util_pct") is not None:
            util.add_metric([device], entry["util_pct"] / 100.0)
        if "active" in entry:
            dla.add_metric([device], 1.0 if entry["active"] else 0.0)
    temps = _gauge("edged_temperature_celsius", ["zone"])
    for zone, value in sorted((doc.get("temps_c") or {}).items()):
        temps.add_metric([zone], float(value))
    return (rails, board, energy, util, dla, temps)


def _daemon(state: RunningState, link: Optional[MqttLink]) -> Iterable[Metric]:
    info = _gauge("edged_build_info", ["version"])
    info.add_metric([__version__], 1.0)
    version = _gauge("edged_config_version", ["source"])
    version.add_metric([state.source], float(state.version))
    builds = _counter("edged_plan_builds", ["result"])
    for result, n in sorted(state.plan_builds.items()):
        builds.add_metric([result], float(n))
    build_time = _counter("edged_plan_build_seconds")
    build_time.add_metric([], state.plan_build_seconds)
    out: List[Metric] = [info, version, builds, build_time]
    if link is not None:
        connected = _gauge("edged_mqtt_connected")
        connected.add_metric([], 1.0 if link.connected.is_set() else 0.0)
        connects = _counter("edged_mqtt_connects")
        connects.add_metric([], float(link.counters.connects))
        lost = _counter("edged_mqtt_messages_dropped")
        lost.add_metric([], float(link.counters.dropped_offline))
        out += [connected, connects, lost]
    return out


def families(state: RunningState, doc: Mapping[str, Any], link: Optional[MqttLink]) -> List[Metric]:
    """Every family of one scrape. ``doc`` is a telemetry document of the same moment (for
    power, energy per inference, utilisation and temperatures); ``link`` the MQTT link, if any."""
    out: List[Metric] = list(_daemon(state, link))
    out += _models(state.models)
    out += _sources(state.models)
    out += _device(doc)
    # A family without samples says nothing (power unreadable here, no video source).
    return [family for family in out if family.samples]
