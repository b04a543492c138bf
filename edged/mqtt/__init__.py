"""MQTT client layer: one connection per daemon, shared by telemetry and control."""

from edged.mqtt.link import LinkCounters, Message, MqttLink
from edged.mqtt.topics import Topics

__all__ = ["LinkCounters", "Message", "MqttLink", "Topics"]
