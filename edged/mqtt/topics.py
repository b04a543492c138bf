"""Topic names under edged/<device_id>/ (DESIGN.md §9)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Topics"]

ROOT = "edged"


@dataclass(frozen=True)
class Topics:
    device_id: str

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def plans(self) -> str:
        return f"{self.base}/plans"

    @property
    def config_set(self) -> str:
        return f"{self.base}/config/set"

    @property
    def config_result(self) -> str:
        return f"{self.base}/config/result"

    @property
    def config_state(self) -> str:
        return f"{self.base}/config/state"

    def cmd(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}"

    def cmd_result(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}/result"

    def results(self, model: str) -> str:
        return f"{self.base}/models/{model}/results"

    @staticmethod
    def group_config_set(group: str) -> str:
        return f"{ROOT}/group/{group}/config/set"
