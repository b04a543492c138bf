"""The synthetic source: distinct read-only frames, in the memory of about one."""

from __future__ import annotations

import threading

import numpy as np

from edged.config.model import PluginConfig
from edged.pipeline.sources.synthetic import SyntheticSource


def test_frames_differ_are_read_only_and_share_one_buffer() -> None:
    source = SyntheticSource(PluginConfig("synthetic", {"type": "synthetic", "fps": 0, "count": 16}), (360, 640))
    stop = threading.Event()
    frames = [source.read(stop) for _ in range(16)]
    images = [f.image for f in frames if f is not None]
    assert len(images) == 16 and source.read(stop) is None
    assert all(i.shape == (360, 640, 3) and i.dtype == np.uint8 and i.flags.c_contiguous for i in images)
    assert all(not i.flags.writeable for i in images)
    assert len({i.tobytes() for i in images[:8]}) == 8, "a ring of 8 different frames"
    assert all(np.array_equal(a, b) for a, b in zip(images[:8], images[8:])), "then it repeats"
    bases = {id(i.base) for i in images}
    assert len(bases) == 1 and images[0].base.nbytes < 1.1 * images[0].nbytes
