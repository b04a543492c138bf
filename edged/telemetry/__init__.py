"""Telemetry: metrics snapshots, power and health readers, and the MQTT publisher."""

from __future__ import annotations

from typing import List

# Nothing is re-exported here: import from the module that does the job.
__all__: List[str] = []
