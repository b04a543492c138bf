"""The differences between paho-mqtt 1.6 (Debian/Ubuntu packages) and 2.x (PyPI)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from edged.errors import EdgedError

__all__ = [
    "import_paho",
    "new_client",
    "connect_options",
    "SESSION_EXPIRY_S",
    "reason_value",
    "disconnect_reason",
    "publish_properties",
    "message_properties",
]


def import_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise EdgedError("MQTT needs paho-mqtt: apt install python3-paho-mqtt or pip install paho-mqtt") from exc
    return mqtt


def new_client(mqtt: Any, client_id: str, v5: bool, persistent: bool = False) -> Any:
    """``persistent``: the broker keeps the session (subscriptions, queued QoS 1 messages)
    across disconnections. MQTT 3.1.1 sets that here; MQTT 5 at connect (connect_options)."""
    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    kwargs: Dict[str, Any] = {"client_id": client_id, "protocol": protocol}
    if not v5:
        kwargs["clean_session"] = not persistent
    version2 = getattr(mqtt, "CallbackAPIVersion", None)
    if version2 is not None:
        # 2.x refuses to guess the callback signatures; VERSION2 gives the same ones for 3.1.1 and 5.
        return mqtt.Client(version2.VERSION2, **kwargs)
    return mqtt.Client(**kwargs)


# How long the broker keeps a disconnected persistent MQTT 5 session (3.1.1: forever).
SESSION_EXPIRY_S = 7 * 24 * 3600


def connect_options(v5: bool, persistent: bool) -> Dict[str, Any]:
    """Keyword arguments for ``client.connect``: MQTT 5's clean start and session expiry."""
    if not v5:
        return {}
    if not persistent:
        return {"clean_start": True}
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    return {"clean_start": False, "properties": props}


def reason_value(code: Any) -> int:
    """CONNACK/DISCONNECT result as an int, whether paho gave an int or a reason-code object."""
    value = getattr(code, "value", code)
    return int(value) if value is not None else 0


def disconnect_reason(args: Tuple[Any, ...]) -> Optional[int]:
    """The reason code among on_disconnect's arguments after (client, userdata): paho 1.6
    passes (rc) for 3.1.1 and (rc, properties) for 5; 2.x (flags, reason, properties)."""
    codes = [a for a in args if isinstance(a, int) or hasattr(a, "value")]
    return reason_value(codes[-1]) if codes else None


def publish_properties(
    mqtt: Any, expiry_s: Optional[int], response_topic: Optional[str], correlation: Optional[bytes]
) -> Any:
    if expiry_s is None and response_topic is None and correlation is None:
        return None
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if expiry_s is not None:
        props.MessageExpiryInterval = int(expiry_s)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props


def message_properties(message: Any) -> Dict[str, Any]:
    """Response topic and correlation data of an MQTT 5 message, when present."""
    props = getattr(message, "properties", None)
    found: Dict[str, Any] = {}
    if props is None:
        return found
    for attr, key in (("ResponseTopic", "response_topic"), ("CorrelationData", "correlation_data")):
        value = getattr(props, attr, None)
        if value is not None:
            found[key] = value
    return found
