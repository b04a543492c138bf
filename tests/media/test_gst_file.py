from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest

from edged.config import parse_config
from edged.daemon import Daemon
from edged.pipeline.sources.gst_pipelines import describe

GST_LAUNCH = shutil.which("gst-launch-1.0")


def write_h264_mp4(path: Path, frames: int, width: int = 160, height: int = 120) -> None:
    """A real H.264 MP4 from GStreamer's test source and x264 encoder."""
    assert GST_LAUNCH, "gst-launch-1.0 (gstreamer1.0-tools) is required"
    subprocess.run(
        [GST_LAUNCH, "-q", "videotestsrc", f"num-buffers={frames}", "pattern=ball", "!",
         f"video/x-raw,width={width},height={height},framerate=30/1", "!", "x264enc", "!", "h264parse", "!",
         "mp4mux", "!", "filesink", f"location={path}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _doc(tmp_path: Path, demo_assets: Path, source: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "device": {"id": "media"},
        "plans": {"cache_dir": str(tmp_path / "plans")},
        "models": [
            {
                "name": "video",
                "path": str(demo_assets / "demo-cnn.onnx"),
                "threads": 1,
                "batch": 4,
                "queue_size": 4,
                "source": source,
                "preprocess": {"size": [64, 64]},
                "sink": {"type": "jsonl", "path": str(tmp_path / "video.jsonl")},
            }
        ],
    }


def test_every_frame_of_an_mp4_is_read_exactly_once(tmp_path: Path, demo_assets: Path) -> None:
    video = tmp_path / "clip.mp4"
    write_h264_mp4(video, frames=90)
    daemon = Daemon(parse_config(_doc(tmp_path, demo_assets, {"type": "file", "path": str(video)})))
    daemon.run(duration_s=60)
    slot = daemon.models.slots["video"]
    assert slot.error is None and slot.pipeline is not None
    counters = slot.pipeline.stats.counters()
    assert counters["frames_in"] == counters["frames_out"] == 90 and counters["dropped"] == {}
    records = [json.loads(line) for line in (tmp_path / "video.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(90))
    assert slot.pipeline.source.status()["state"] in ("finished", "stopped")


def test_a_missing_or_broken_file_is_named(tmp_path: Path, demo_assets: Path) -> None:
    missing = tmp_path / "absent.mp4"
    daemon = Daemon(parse_config(_doc(tmp_path, demo_assets, {"type": "file", "path": str(missing)})))
    daemon.run(duration_s=3)
    assert daemon.models.slots["video"].error == f"source.path: no such file {str(missing)!r}"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    daemon = Daemon(parse_config(_doc(tmp_path, demo_assets, {"type": "file", "path": str(broken)})))
    daemon.run(duration_s=3)
    assert "source (file)" in (daemon.models.slots["video"].error or "") or "source.path" in (
        daemon.models.slots["video"].error or ""
    )


SOFTWARE = {"decodebin", "videoconvert", "rtspsrc", "v4l2src", "jpegdec"}
JETSON = SOFTWARE | {"nvv4l2decoder", "nvvidconv", "nvarguscamerasrc"}


@pytest.mark.parametrize(
    ("kind", "params", "elements", "expected"),
    [
        ("file", {"path": "/v/a b.mp4"}, SOFTWARE,
         'filesrc location="/v/a b.mp4" ! decodebin ! videoconvert ! video/x-raw,format=BGR ! '
         "appsink name=sink emit-signals=false sync=false max-buffers=4 drop=false"),
        ("file", {"path": "/v/a.mkv"}, JETSON,
         'filesrc location="/v/a.mkv" ! decodebin ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! '
         "video/x-raw,format=BGR ! appsink name=sink emit-signals=false sync=false max-buffers=4 drop=false"),
        ("rtsp", {"url": "rtsp://cam/1", "transport": "udp", "latency_ms": 50}, SOFTWARE,
         'rtspsrc location="rtsp://cam/1" protocols=udp latency=50 ! decodebin ! videoconvert ! '
         "video/x-raw,format=BGR ! appsink name=sink emit-signals=false sync=false max-buffers=1 drop=true"),
        ("v4l2", {"device": "/dev/video2", "format": "mjpeg", "width": 1280, "height": 720, "fps": 30}, JETSON,
         'v4l2src device="/dev/video2" ! image/jpeg,width=1280,height=720,framerate=30/1 ! nvv4l2decoder mjpeg=1 ! '
         "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
         "appsink name=sink emit-signals=false sync=false max-buffers=1 drop=true"),
        ("csi", {"sensor_id": 1, "width": 1280, "height": 720, "fps": 60}, JETSON,
         "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=60/1 ! "
         "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
         "appsink name=sink emit-signals=false sync=false max-buffers=1 drop=true"),
    ],
)  # fmt: skip
def test_pipeline_descriptions(kind: str, params: Dict[str, Any], elements: set, expected: str) -> None:  # type: ignore[type-arg]
    assert describe(kind, params, elements.__contains__) == expected


def test_a_usb_camera_delivers_bgr_frames() -> None:
    import os
    import threading

    from edged.config.model import PluginConfig
    from edged.pipeline.sources.gst import GstSource

    if not os.path.exists("/dev/video0"):
        pytest.skip("no V4L2 camera on this machine; its pipeline string is tested above")
    source = GstSource(PluginConfig("v4l2", {"device": "/dev/video0"}), (480, 640))
    source.open()
    try:
        frame = source.read(threading.Event())
    finally:
        source.close()
    assert frame is not None and frame.image.ndim == 3 and frame.image.shape[2] == 3
