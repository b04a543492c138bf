"""Prometheus metrics: a reader of the running-state snapshots and the telemetry readers.

Imported only when the config's ``metrics`` section turns an output on, so that a daemon
without it neither imports prometheus_client nor opens a port (docs/metrics.md).
"""

from __future__ import annotations

from typing import List

# Nothing is re-exported here: import from the module that does the job.
__all__: List[str] = []
