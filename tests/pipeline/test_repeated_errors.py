from __future__ import annotations

import logging

import pytest

from edged.pipeline.repeated_errors import RepeatedErrors


def test_a_repeating_error_is_logged_once_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr("edged.pipeline.repeated_errors.time.monotonic", lambda: clock[0])
    errors = RepeatedErrors(logging.getLogger("edged.test"), "cam", interval_s=10.0)
    caplog.set_level(logging.ERROR)
    for _ in range(30):  # one second of a full disk at 30 fps
        errors.error("sink write", "No space left on device")
        clock[0] += 1 / 30
    errors.error("inference", "engine lost")  # another kind is not held back
    clock[0] += 10.0
    errors.error("sink write", "No space left on device")
    assert [r.getMessage() for r in caplog.records] == [
        "model cam: sink write failed: No space left on device",
        "model cam: inference failed: engine lost",
        "model cam: sink write failed: No space left on device (29 more since the last report)",
    ]
