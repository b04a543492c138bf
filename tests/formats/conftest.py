from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from caffe_writer import write_tiny_net


@pytest.fixture()
def tiny_caffe(tmp_path: Path) -> Dict[str, Path]:
    """tiny.prototxt + tiny.caffemodel (see caffe_writer.TinyCaffeNet)."""
    return write_tiny_net(tmp_path)
