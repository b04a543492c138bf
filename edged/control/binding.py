"""The control plane on MQTT: subscriptions in, results and retained state out.

The session is persistent with a client id of its own (``edged-<device>-control``), so the
broker keeps the device's subscriptions and queues QoS 1 pushes while it is offline or
restarting; a redelivered push is answered ``duplicate`` and applied once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

from edged.control.plane import ControlPlane, Message
from edged.control.session import Received, Session, options_from_section
from edged.errors import EdgedError

if TYPE_CHECKING:
    from edged.daemon import Daemon

__all__ = ["ControlBinding", "start_control"]

log = logging.getLogger(__name__)


class ControlBinding:
    def __init__(self, daemon: Daemon) -> None:
        section = dict(daemon.config.document.get("mqtt") or {})
        self.session = Session(
            options_from_section(section),
            client_id=f"edged-{daemon.config.device.id}-control",
            persistent=True,
            on_message=self._on_message,
        )
        self.plane = ControlPlane(daemon, self._publish)

    def start(self) -> None:
        for topic in self.plane.subscriptions():
            self.session.subscribe(topic, qos=1)
        self.session.connect(block=False)
        self.plane.start()
        log.info("control: listening on %s", ", ".join(self.plane.subscriptions()))

    def stop(self) -> None:
        self.plane.stop()
        self.session.close()

    def _on_message(self, received: Received) -> None:
        # paho's network thread: hand over only.
        self.plane.submit(Message(received.topic, received.payload, received.response_topic, received.correlation_data))

    def _publish(self, topic: str, payload: bytes, retain: bool, correlation: Optional[bytes]) -> None:
        # QoS 1 without waiting: while the broker is away paho keeps the message and
        # sends it after reconnecting; the control worker never blocks on the network.
        self.session.publish(topic, payload, qos=1, retain=retain, correlation_data=correlation, wait_s=0)


def start_control(daemon: Daemon) -> Optional[ControlBinding]:
    """The control plane for a daemon whose config has an ``mqtt`` section, started.
    A missing library (paho-mqtt, or cryptography with public keys configured) disables
    it with an error naming what to install; the models serve regardless, and no push is
    accepted unchecked."""
    if not daemon.config.document.get("mqtt"):
        return None
    try:
        binding = ControlBinding(daemon)
    except EdgedError as exc:
        log.error("control plane disabled: %s", exc)
        return None
    binding.start()
    return binding
