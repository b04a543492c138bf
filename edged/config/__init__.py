"""Configuration: the shipped schema, validation with key paths, typed sections."""

from edged.config.loader import DEFAULT_CONFIG_PATH, check_document, file_warnings, load_config, parse_config
from edged.config.model import Config, ModelConfig, PluginConfig, PreprocessConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ModelConfig",
    "PluginConfig",
    "PreprocessConfig",
    "check_document",
    "file_warnings",
    "load_config",
    "parse_config",
]
