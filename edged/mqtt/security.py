"""TLS and credentials for the broker connection."""

from __future__ import annotations

import os
import stat
from typing import Any, Optional

from edged.config.model import MqttConfig
from edged.errors import ConfigError

__all__ = ["read_password", "apply_security"]


def read_password(path: str) -> str:
    """The first line of ``path``, refusing a file that group or others can read."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"mqtt.password_file: cannot read {path!r}: {exc.strerror}") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"mqtt.password_file: {path!r} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            "chmod 600 it"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"mqtt.password_file: cannot read {path!r}: {exc.strerror}") from exc


def apply_security(client: Any, config: MqttConfig) -> None:
    """Credentials and TLS on a paho client, with errors naming the config key."""
    if config.username:
        password: Optional[str] = read_password(config.password_file) if config.password_file else None
        client.username_pw_set(config.username, password)
    elif config.password_file:
        raise ConfigError("mqtt.password_file: given without mqtt.username")
    if config.tls:
        import ssl

        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(config.tls, key)
            if value and not os.path.isfile(value):
                raise ConfigError(f"mqtt.tls.{key}: no such file {value!r}")
        if bool(config.tls.cert_file) != bool(config.tls.key_file):
            raise ConfigError("mqtt.tls: cert_file and key_file go together")
        try:
            client.tls_set(
                ca_certs=config.tls.ca_file,
                certfile=config.tls.cert_file,
                keyfile=config.tls.key_file,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"mqtt.tls: cannot load certificates: {exc}") from exc
