"""Typed configuration sections built from a schema-validated, defaults-filled document."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from edged.config.remote_files import RemoteFile, localise, store_dir
from edged.formats.spec import DEFAULT_BACKEND, ModelFormat, format_from_section
from edged.platform.identity import Identity, derive_device_id

__all__ = [
    "Config",
    "DeviceConfig",
    "HomeAssistantConfig",
    "MetricsConfig",
    "MqttConfig",
    "ModelConfig",
    "PlansConfig",
    "PluginConfig",
    "PreprocessConfig",
    "SourceConfig",
    "TelemetryConfig",
    "TlsConfig",
]


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    groups: Tuple[str, ...] = ()
    id_source: str = "config"  # or where edged.platform.identity found it


@dataclass(frozen=True)
class PlansConfig:
    cache_dir: str
    max_size_mb: int = 0
    max_plans: int = 0


@dataclass(frozen=True)
class TlsConfig:
    ca_file: str
    cert_file: Optional[str] = None
    key_file: Optional[str] = None


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    keepalive_s: int
    protocol: str
    client_id: Optional[str] = None
    username: Optional[str] = None
    password_file: Optional[str] = None
    tls: Optional[TlsConfig] = None
    buffer_messages: int = 1000
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class TelemetryConfig:
    period_s: float
    window_s: float = 30.0
    expiry_s: Optional[int] = None
    root: str = "/"
    qos: int = 0


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics (docs/metrics.md): off unless ``http`` or ``textfile`` is set."""

    http: bool = False
    address: str = "127.0.0.1"
    port: int = 9808
    textfile: Optional[str] = None
    textfile_period_s: float = 15.0

    @property
    def enabled(self) -> bool:
        return self.http or self.textfile is not None


@dataclass(frozen=True)
class HomeAssistantConfig:
    discovery: bool = False
    prefix: str = "homeassistant"


@dataclass(frozen=True)
class PreprocessConfig:
    size: Optional[Tuple[int, int]]
    color: str
    scale: float
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    layout: str
    dtype: Optional[str]
    resize: str
    letterbox: bool = False
    pad_value: int = 114
    fold: bool = True  # into the plan where the backend and model allow (edged.pipeline.folding)
    fold_resize: bool = False


@dataclass(frozen=True)
class PluginConfig:
    """A source, postprocess or sink section: its ``type`` picks the implementation,
    which reads its own schema-validated ``params``."""

    type: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)


@dataclass(frozen=True)
class SourceConfig:
    """One of a model's sources. ``id`` names it in results, telemetry and pushes;
    ``queue_size`` bounds the frames it may hold waiting for inference."""

    id: str
    plugin: PluginConfig
    queue_size: int


# The id of the source of a model written with the one-source spelling (``source:``).
DEFAULT_SOURCE_ID = "main"


@dataclass(frozen=True)
class ModelConfig:
    name: str
    path: str
    backend: str
    precision: str
    device: str
    threads: int
    batch: int
    max_wait_ms: float
    queue_size: int
    source: PluginConfig
    preprocess: PreprocessConfig
    postprocess: PluginConfig
    sink: PluginConfig
    format: ModelFormat = field(default_factory=ModelFormat)
    calibration: Optional[Mapping[str, Any]] = None
    tensorrt: Mapping[str, Any] = field(default_factory=dict)
    # The accuracy gate's section (edged.accuracy.settings reads it), defaults filled.
    accuracy: Mapping[str, Any] = field(default_factory=dict)
    publish_results_hz: float = 0.0
    # Placement policy (see docs/placement.md).
    gpu_fallback: bool = True
    max_dla_subgraphs: int = 4
    latency_budget_ms: Optional[float] = None
    # onnxruntime: how long pool threads busy-wait for work (edged.backends.onnxruntime.backend).
    spin_wait_us: int = 200
    # Engines of the model on its cpu or gpu device, each with its own infer thread (see
    # edged.model_loading.same_device_instances); on a DLA core one engine serves. 0: the
    # backend chooses (edged.model_loading.instances_for).
    instances: int = 0
    target_fps: Optional[float] = None
    stall_timeout_s: float = 60.0  # a stuck worker's pipeline is replaced after this long
    # Files fetched by URL (edged/config/remote_files.py); their store paths are in the fields
    # above, so a new hash is already a changed model and a new URL alone is not.
    remote_files: Tuple[RemoteFile, ...] = field(default=(), compare=False)
    # Every source feeding the model's engine(s), in config order; ``source`` is the first.
    # Left empty, it is ``source`` alone (id "main", the model's queue_size).
    sources: Tuple[SourceConfig, ...] = ()

    def __post_init__(self) -> None:
        if not self.sources:
            only = SourceConfig(self.source.get("id", DEFAULT_SOURCE_ID), self.source, self.queue_size)
            object.__setattr__(self, "sources", (only,))


@dataclass(frozen=True)
class Config:
    version: int
    device: DeviceConfig
    plans: PlansConfig
    telemetry: TelemetryConfig
    models: Tuple[ModelConfig, ...]
    mqtt: Optional[MqttConfig] = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    home_assistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


_MODEL_DEFAULTS = {"backend": "onnxruntime", "precision": "fp32", "device": "auto", "threads": 0}


def _plugin(section: Mapping[str, Any]) -> PluginConfig:
    params = {k: v for k, v in section.items() if k != "type"}
    return PluginConfig(type=section["type"], params=params)


# Keys of a source entry that belong to the pipeline, not to the source implementation.
_SOURCE_KEYS = ("id", "queue_size")


def _sources(merged: Mapping[str, Any]) -> Tuple[SourceConfig, ...]:
    entries = merged["sources"] if "sources" in merged else [merged["source"]]
    out = []
    for entry in entries:
        plugin = PluginConfig(entry["type"], {k: v for k, v in entry.items() if k not in ("type", *_SOURCE_KEYS)})
        queue_size = int(entry.get("queue_size", merged["queue_size"]))
        out.append(SourceConfig(str(entry.get("id", DEFAULT_SOURCE_ID)), plugin, queue_size))
    return tuple(out)


def _preprocess(section: Mapping[str, Any]) -> PreprocessConfig:
    size = section.get("size")
    return PreprocessConfig(
        size=(int(size[0]), int(size[1])) if size else None,
        color=section["color"],
        scale=float(section["scale"]),
        mean=tuple(float(v) for v in section["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in section["std"]),  # type: ignore[arg-type]
        layout=section["layout"],
        dtype=section.get("dtype"),
        resize=section["resize"],
        letterbox=bool(section["letterbox"]),
        pad_value=int(section["pad_value"]),
        fold=bool(section.get("fold", True)),
        fold_resize=bool(section.get("fold_resize", False)),
    )


def _mqtt(section: Mapping[str, Any]) -> MqttConfig:
    tls = section.get("tls")
    return MqttConfig(
        host=section["host"],
        port=int(section["port"]),
        keepalive_s=int(section["keepalive_s"]),
        protocol=section["protocol"],
        client_id=section.get("client_id"),
        username=section.get("username"),
        password_file=section.get("password_file"),
        tls=TlsConfig(tls["ca_file"], tls.get("cert_file"), tls.get("key_file")) if tls else None,
        buffer_messages=int(section["buffer_messages"]),
        backoff_max_s=float(section["backoff_max_s"]),
    )


def _optional_float(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def build_config(doc: Mapping[str, Any]) -> Config:
    """Build typed sections from a document that already passed validation and defaults."""
    device = doc["device"]
    defaults = dict(_MODEL_DEFAULTS)
    defaults.update(device.get("defaults", {}))
    models: List[ModelConfig] = []
    store = store_dir(doc)
    for raw in doc["models"]:
        entry, remote_files = localise(raw, store)
        merged: Dict[str, Any] = dict(defaults)
        merged.update(entry)
        model_format = format_from_section(merged.get("format"))
        sources = _sources(merged)
        if "backend" not in entry and "backend" not in device.get("defaults", {}):
            merged["backend"] = DEFAULT_BACKEND[model_format.type]
        models.append(
            ModelConfig(
                name=merged["name"],
                path=merged["path"],
                backend=merged["backend"],
                precision=merged["precision"],
                device=merged["device"],
                threads=int(merged["threads"]),
                spin_wait_us=int(merged.get("spin_wait_us", 200)),
                instances=int(merged.get("instances", 0)),
                batch=int(merged["batch"]),
                max_wait_ms=float(merged["max_wait_ms"]),
                queue_size=int(merged["queue_size"]),
                source=sources[0].plugin,
                sources=sources,
                preprocess=_preprocess(merged["preprocess"]),
                postprocess=_plugin(merged["postprocess"]),
                sink=_plugin(merged["sink"]),
                format=model_format,
                calibration=merged.get("calibration"),
                tensorrt=merged.get("tensorrt", {}),
                accuracy=merged.get("accuracy", {}),
                publish_results_hz=float(merged["publish_results_hz"]),
                gpu_fallback=bool(merged.get("gpu_fallback", True)),
                max_dla_subgraphs=int(merged.get("max_dla_subgraphs", 4)),
                latency_budget_ms=_optional_float(merged.get("latency_budget_ms")),
                target_fps=_optional_float(merged.get("target_fps")),
                stall_timeout_s=float(merged["stall_timeout_s"]),
                remote_files=remote_files,
            )
        )
    mqtt = doc.get("mqtt")
    metrics = doc.get("metrics", {})
    home_assistant = doc.get("home_assistant") or {}
    identity = Identity(device["id"], "config") if device.get("id") else None
    if identity is None:
        identity = derive_device_id(doc["telemetry"]["root"], device.get("id_from", "auto"))
    return Config(
        version=int(doc.get("version", 0)),
        device=DeviceConfig(id=identity.id, groups=tuple(device.get("groups", ())), id_source=identity.source),
        plans=PlansConfig(
            cache_dir=doc["plans"]["cache_dir"],
            max_size_mb=int(doc["plans"]["max_size_mb"]),
            max_plans=int(doc["plans"]["max_plans"]),
        ),
        telemetry=TelemetryConfig(
            period_s=float(doc["telemetry"]["period_s"]),
            window_s=float(doc["telemetry"]["window_s"]),
            expiry_s=doc["telemetry"].get("expiry_s"),
            root=doc["telemetry"]["root"],
            qos=int(doc["telemetry"]["qos"]),
        ),
        models=tuple(models),
        mqtt=_mqtt(mqtt) if mqtt else None,
        metrics=MetricsConfig(
            http=bool(metrics.get("http", False)),
            address=str(metrics.get("address", "127.0.0.1")),
            port=int(metrics.get("port", 9808)),
            textfile=metrics.get("textfile"),
            textfile_period_s=float(metrics.get("textfile_period_s", 15.0)),
        ),
        home_assistant=HomeAssistantConfig(
            discovery=bool(home_assistant.get("discovery", False)),
            prefix=str(home_assistant.get("prefix", "homeassistant")),
        ),
        document=copy.deepcopy(dict(doc)),
    )
