"""The L4T -> JetPack -> TensorRT table, row by row against NVIDIA's JetPack pages (cited in
edged/platform/releases.py)."""

from __future__ import annotations

from typing import Optional

import pytest

from edged.platform.releases import RELEASES, release_for, tensorrt_for


@pytest.mark.parametrize(
    ("l4t", "jetpack", "tensorrt", "cuda"),
    [
        ("35.2.1", "5.1", "8.5.2", "11.4"),
        ("35.3.1", "5.1.1", "8.5.2", "11.4"),
        ("35.4.1", "5.1.2", "8.5.2", "11.4"),
        ("35.5.0", "5.1.3", "8.5.2", "11.4"),
        ("35.6.0", "5.1.4", "8.5.2", "11.4"),
        ("36.2.0", "6.0 DP", "8.6.2", "12.2"),
        ("36.3.0", "6.0", "8.6.2", "12.2"),
        ("36.4.0", "6.1", "10.3.0", "12.6"),
        ("36.4.3", "6.2", "10.3.0", "12.6"),
        ("36.4.4", "6.2.1", "10.3.0", "12.6"),
        ("36.4.7", "6.1", "10.3.0", "12.6"),  # an unnamed 36.4 point release: its family's TensorRT
        ("38.2.0", "7.0", "10.13.3", "13.0"),
        ("38.2.1", "7.0", "10.13.3", "13.0"),
        ("38.4.0", "7.1", "10.13.3", "13.0"),
        ("39.2.0", "7.2", "10.16", "13.2"),
    ],
)
def test_each_release_maps_to_its_jetpack_defaults(l4t: str, jetpack: str, tensorrt: str, cuda: str) -> None:
    row = release_for(l4t)
    assert row is not None
    assert (row.jetpack, row.tensorrt, row.cuda) == (jetpack, tensorrt, cuda)


@pytest.mark.parametrize("l4t", [None, "", "32.7.4", "37.0", "garbage"])
def test_unknown_releases_have_no_row(l4t: Optional[str]) -> None:
    assert release_for(l4t) is None
    assert tensorrt_for({}, l4t).version is None


def test_tensorrt_11_is_never_a_jetpack_default() -> None:
    assert all(not row.tensorrt.startswith("11.") for row in RELEASES)
    assert all(row.source.startswith("https://") for row in RELEASES)
