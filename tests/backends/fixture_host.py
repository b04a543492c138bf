"""A fixture host for the ONNX Runtime backend's layout choices: the given cores, no CPU
quota and pinning allowed, whatever the machine running the tests has (a CI container may
have a quota or a seccomp filter of its own)."""

from __future__ import annotations

from typing import Sequence, Tuple

import pytest


def fixture_host(monkeypatch: pytest.MonkeyPatch, cores: Sequence[Tuple[int, ...]]) -> None:
    import edged.backends.onnxruntime.backend as backend_module

    monkeypatch.setattr(backend_module, "host_cores", lambda: list(cores))
    monkeypatch.setattr(backend_module, "cpu_quota", lambda: None)
    monkeypatch.setattr(backend_module, "pinning_allowed", lambda: True)
