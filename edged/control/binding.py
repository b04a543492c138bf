"""The control plane on MQTT: subscriptions in, results and retained state out.

It rides on the daemon's one connection (the telemetry service's MqttLink), so pushes use
the same broker address, credentials, TLS and reconnection as telemetry. Because the link
subscribes, its session is persistent (edged/mqtt/link.py): the broker keeps the device's
subscriptions and queues QoS 1 pushes while the device is offline or the broker restarts;
a redelivered push is answered ``duplicate`` and applied once.
"""

from __future__ import annotations

import logging
from typing import Optional

from edged.control.host import ControlHost
from edged.control.plane import ControlPlane, Message
from edged.errors import EdgedError
from edged.mqtt.link import Message as LinkMessage
from edged.mqtt.link import MqttLink

__all__ = ["ControlBinding", "start_control"]

log = logging.getLogger(__name__)


class ControlBinding:
    def __init__(self, host: ControlHost, link: MqttLink) -> None:
        self.link = link
        self.plane = ControlPlane(host, self._publish)

    def start(self) -> None:
        """Subscribe, then start the plane; call before the link starts (subscriptions go
        out on every connection)."""
        for topic in self.plane.subscriptions():
            self.link.subscribe(topic, self._on_message, qos=1)
        self.plane.start()
        log.info("control: listening on %s", ", ".join(self.plane.subscriptions()))

    def stop(self) -> None:
        self.plane.stop()

    def _on_message(self, received: LinkMessage) -> None:
        # The link's dispatcher thread: hand over only; a push may build plans for minutes.
        self.plane.submit(Message(received.topic, received.payload, received.response_topic, received.correlation_data))

    def _publish(self, topic: str, payload: bytes, retain: bool, correlation: Optional[bytes]) -> None:
        # QoS 1 through the link's buffer: never blocks the control worker on the network.
        self.link.publish(topic, payload, qos=1, retain=retain, correlation_data=correlation)


def start_control(host: ControlHost, link: MqttLink) -> Optional[ControlBinding]:
    """The control plane on ``link``, started (before the link itself starts).
    A missing library (cryptography with public keys configured) or a malformed key
    disables it with an error naming the cause; the models serve regardless, and no push
    is accepted unchecked."""
    try:
        binding = ControlBinding(host, link)
    except EdgedError as exc:
        log.error("control plane disabled: %s", exc)
        return None
    binding.start()
    return binding
