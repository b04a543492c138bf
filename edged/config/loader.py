"""Read a YAML (or JSON) configuration, validate it and build typed sections."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from edged.config.limits import count_problems, memory_problems, numeric_problems, read_mem_total
from edged.config.model import Config, build_config
from edged.config.schema import fill_defaults, unique_names, validate
from edged.config.sources import source_problems
from edged.errors import ConfigError
from edged.formats.rules import format_problems

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "load_config",
    "parse_config",
    "check_document",
    "check_memory",
    "file_warnings",
    "resolve_relative",
]

DEFAULT_CONFIG_PATH = "/etc/edged/edged.yaml"


def check_document(doc: Any) -> List[str]:
    """All problems of a configuration document: numbers no field can hold, the schema,
    then cross-field rules."""
    problems = numeric_problems(doc)
    if problems:
        return problems  # jsonschema compares infinities and NaN without complaint
    problems = validate(doc)
    problems += count_problems(doc)
    if isinstance(doc, dict) and isinstance(doc.get("models"), list):
        problems += unique_names(doc["models"])
        device = doc.get("device")
        defaults = device.get("defaults") if isinstance(device, dict) else None
        problems += format_problems(doc["models"], defaults if isinstance(defaults, dict) else {})
        problems += source_problems(doc)
    return problems


def parse_config(doc: Any, source: str = "") -> Config:
    problems = check_document(doc)
    if problems:
        raise ConfigError(problems, source)
    return build_config(fill_defaults(doc))


def _read_document(path: Path) -> Dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", str(path)) from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}invalid YAML: {reason}", str(path)) from exc
    except ValueError as exc:  # an integer beyond Python's digit limit (sys.set_int_max_str_digits)
        raise ConfigError(f"invalid YAML: {exc}", str(path)) from exc
    if doc is None:
        raise ConfigError("the file is empty", str(path))
    if not isinstance(doc, dict):
        raise ConfigError("(top level): expected a mapping of sections", str(path))
    return doc


def load_config(path: Union[str, Path]) -> Config:
    """Load and validate a config file; relative model and folder paths resolve against
    the file's directory so a config can ship beside its models."""
    path = Path(path)
    doc = _read_document(path)
    problems = check_document(doc)
    if problems:
        raise ConfigError(problems, str(path))
    return build_config(fill_defaults(resolve_relative(doc, path.parent.resolve())))


def check_memory(config: Config, source: str = "") -> None:
    """Refuse a config whose models are predicted to need more memory than this device
    allows them (edged/config/limits.py), before anything is built."""
    problems = memory_problems(config, read_mem_total(config.telemetry.root))
    if problems:
        raise ConfigError(problems, source)


_RELATIVE_KEYS = (
    ("source", "path"),
    ("sink", "path"),
    ("postprocess", "labels"),
    ("format", "prototxt"),
    ("format", "python_path"),
    ("calibration", "images"),
    ("accuracy", "images"),
)


def _resolve_key(section: Any, key: str, base: Path) -> None:
    if isinstance(section, dict) and isinstance(section.get(key), str):
        section[key] = os.path.normpath(base / section[key])


def resolve_relative(doc: Dict[str, Any], base: Optional[Path]) -> Dict[str, Any]:
    """A copy of ``doc`` with the relative file paths a config file may hold resolved
    against ``base`` (the file's folder; None: left as they are). Values of the wrong
    type are left for the schema check to report."""
    import copy

    doc = copy.deepcopy(doc)
    if base is None:
        return doc
    _resolve_key(doc.get("plans"), "cache_dir", base)
    mqtt = doc.get("mqtt")
    _resolve_key(mqtt, "password_file", base)
    if isinstance(mqtt, dict):
        for key in ("ca_file", "cert_file", "key_file"):
            _resolve_key(mqtt.get("tls"), key, base)
    models = doc.get("models")
    for model in models if isinstance(models, list) else []:
        _resolve_key(model, "path", base)
        for section, key in _RELATIVE_KEYS:
            _resolve_key(model.get(section) if isinstance(model, dict) else None, key, base)
    return doc


def file_warnings(config: Config) -> List[str]:
    """Files the config names that are absent here (fine when checking a config for
    another machine, fatal when running it)."""
    warnings = []
    for index, model in enumerate(config.models):
        checks: Mapping[str, Any] = {
            f"models[{index}].path": model.path,
            f"models[{index}].source.path": model.source.get("path"),
            f"models[{index}].postprocess.labels": model.postprocess.get("labels"),
            f"models[{index}].format.prototxt": model.format.prototxt,
            f"models[{index}].format.python_path": model.format.python_path,
            f"models[{index}].accuracy.images": model.accuracy.get("images"),
        }
        fetched = {remote.path for remote in model.sources}  # downloaded when the model loads
        for key, value in checks.items():
            if value and value not in fetched and not Path(value).exists():
                warnings.append(f"{key}: no such file or folder {value!r}")
    return warnings
