"""One simulated device: edged's real MQTT link, control plane, presence answers and
telemetry publisher, around a stand-in model set (standin.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from edged.config import parse_config
from edged.control.binding import ControlBinding, start_control
from edged.telemetry.service import TelemetryService
from fleet_sim.standin import StandInHost

__all__ = ["SimDevice", "device_id"]


def device_id(index: int) -> str:
    return f"sim-{index:05d}"


class SimDevice:
    def __init__(
        self,
        index: int,
        mqtt: Dict[str, Any],
        workdir: Path,
        groups: Sequence[str] = (),
        period_s: float = 1.0,
        qos: int = 0,
        apply_s: float = 0.0,
        fail_applies: bool = False,
    ) -> None:
        self.id = device_id(index)
        state = workdir / self.id
        root = workdir / "root"  # an empty hardware tree: no power or health readers
        state.mkdir(parents=True, exist_ok=True)
        root.mkdir(parents=True, exist_ok=True)
        doc = {
            "device": {"id": self.id, "groups": list(groups)},
            "mqtt": dict(mqtt),
            "telemetry": {"period_s": period_s, "qos": qos, "root": str(root)},
            "control": {"state_dir": str(state)},
            "models": [
                {
                    "name": "standin",
                    "path": str(workdir / "standin.onnx"),  # never read: the stand-in runs nothing
                    "source": {"type": "synthetic", "fps": 1},
                    "postprocess": {"type": "raw"},
                    "sink": {"type": "null"},
                }
            ],
        }
        self.config = parse_config(doc, self.id)
        self.host = StandInHost(self.config, apply_s, fail_applies)
        self.telemetry = TelemetryService(self.config, self.host.snapshot)
        self.control: Optional[ControlBinding] = None

    def start(self) -> None:
        self.control = start_control(self.host, self.telemetry.link)
        self.telemetry.start()

    def stop(self) -> None:
        if self.control is not None:
            self.control.stop()
        self.telemetry.stop()

    @property
    def connected(self) -> bool:
        return self.telemetry.link.connected.is_set()

    def report(self) -> Dict[str, Any]:
        link = self.telemetry.link
        last = self.telemetry.publisher.last
        return {
            "connected": self.connected,
            "protocol": link.counters.protocol,
            "published": link.counters.published,
            "dropped_offline": link.counters.dropped_offline,
            "telemetry_seq": last.get("seq") if last else 0,
            "applied": self.host.applied,
            "presence_answers": self.telemetry.presence.answered,
            "client_id_conflicts": link.counters.client_id_conflicts,
        }
