"""An edged daemon in a subprocess, with its config written for a test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

REPO = Path(__file__).resolve().parents[2]
ORIN = REPO / "tests" / "fixtures" / "jetson" / "agx-orin-64gb-jp6.2"


def models(demo_assets: Path, tmp_path: Path, names: List[str], fps: float = 10) -> List[Dict[str, Any]]:
    return [
        {
            "name": name,
            "path": str(demo_assets / "demo-cnn.onnx"),
            "threads": 1,
            "source": {"type": "synthetic", "fps": fps, "size": [64, 64]},
            "sink": {"type": "jsonl", "path": str(tmp_path / f"{name}.jsonl")},
        }
        for name in names
    ]


def write_config(tmp_path: Path, doc: Dict[str, Any], name: str = "edged.yaml") -> Path:
    base: Dict[str, Any] = {
        "device": {"id": "metrics-1"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "telemetry": {"period_s": 0.5, "root": str(ORIN)},
    }
    base.update(doc)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(base))
    return path


def start(config: Path, extra: Optional[List[str]] = None) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", str(config), *(extra or [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
    )
