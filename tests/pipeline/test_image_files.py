"""Bad files in an images folder are skipped with a counted reason; the source goes on."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any, Dict

from edged.config import parse_config
from edged.daemon import Daemon
from edged.model_state import ModelState, counters_of
from edged.telemetry.snapshot import Snapshotter


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (8-bit RGB) with one empty IDAT:
    a few dozen bytes that claim a canvas of gigabytes (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _bad_folder(demo_assets: Path, folder: Path) -> Dict[str, str]:
    folder.mkdir()
    good = sorted((demo_assets / "images").iterdir())[:3]
    for index, image in enumerate(good):
        shutil.copy(image, folder / f"{index * 2}-{image.name}")
    png = next(p for p in (demo_assets / "images").iterdir())
    from PIL import Image

    with Image.open(png) as img:
        img.save(folder / "1-truncated.png")
    data = (folder / "1-truncated.png").read_bytes()
    (folder / "1-truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "3-empty.jpg").write_bytes(b"")
    (folder / "5-text.png").write_text("this is not an image\n")
    (folder / "7-bomb.png").write_bytes(_png_header_only(30000, 30000))
    return {
        "1-truncated.png": "image_undecodable",
        "3-empty.jpg": "image_empty",
        "5-text.png": "image_undecodable",
        "7-bomb.png": "image_too_large",
    }


def test_bad_images_are_skipped_counted_and_the_source_goes_on(
    demo_config: Dict[str, Any], demo_assets: Path, tmp_path: Path
) -> None:
    bad = _bad_folder(demo_assets, tmp_path / "images")
    model = demo_config["models"][0]
    model["batch"] = 1
    model["source"] = {"type": "images", "path": str(tmp_path / "images"), "loop": True, "fps": 200}
    daemon = Daemon(parse_config(demo_config))
    daemon.models.start()
    assert daemon.models.wait_started(60)
    pipeline = daemon.models.slots["demo"].pipeline
    assert pipeline is not None
    try:
        deadline = 200
        while pipeline.stats.counters()["frames_out"] < 12 and deadline:
            deadline -= 1
            daemon.stop_event.wait(0.05)
        assert pipeline.state == "running", pipeline.error
        view = ModelState("demo", "-", "cpu", 1, pipeline.state, counters=counters_of(pipeline.stats))
        telemetry = Snapshotter("test-node", None, None, 30.0).snapshot({"demo": view})
    finally:
        daemon.models.stop()
    counters = pipeline.stats.counters()
    assert counters["frames_out"] >= 12
    # Each bad file counts once: it leaves the rotation after its first failure.
    assert counters["dropped"] == {"image_undecodable": 2, "image_empty": 1, "image_too_large": 1}
    assert counters["frames_in"] == counters["frames_out"] + sum(counters["dropped"].values())
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {r["origin"] for r in records} == {p.name for p in (tmp_path / "images").iterdir()} - set(bad)
    assert telemetry["models"]["demo"]["frames"]["dropped"]["image_too_large"] == 1
