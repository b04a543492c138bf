"""GStreamer pipeline descriptions for each source type, as pure functions.

On a Jetson, decoding and colour conversion use NVIDIA's hardware elements
(decodebin picks nvv4l2decoder by rank; nvvidconv copies out of NVMM memory); elsewhere
the software elements do the same job. Every description ends in an appsink named
``sink`` that hands BGR frames to edged. ``has`` tells whether an element exists here.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

__all__ = ["describe", "uses_hardware", "appsink"]

Has = Callable[[str], bool]
_TO_BGR_SW = "videoconvert ! video/x-raw,format=BGR"
# nvvidconv cannot write 3-byte BGR; BGRx then a cheap CPU conversion is NVIDIA's usual recipe.
_TO_BGR_HW = "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uses_hardware(has: Has) -> bool:
    return has("nvv4l2decoder") and has("nvvidconv")


def appsink(live: bool) -> str:
    # Live sources keep only the newest frame (latency); files block instead (no loss).
    if live:
        return "appsink name=sink emit-signals=false sync=false max-buffers=1 drop=true"
    return "appsink name=sink emit-signals=false sync=false max-buffers=4 drop=false"


def describe(kind: str, params: Mapping[str, Any], has: Has) -> str:
    hw = uses_hardware(has)
    convert = _TO_BGR_HW if hw else _TO_BGR_SW
    if kind == "file":
        return f"filesrc location={_quote(params['path'])} ! decodebin ! {convert} ! {appsink(False)}"
    if kind == "rtsp":
        protocols = "tcp" if params.get("transport", "tcp") == "tcp" else "udp"
        latency = int(params.get("latency_ms", 200))
        source = f"rtspsrc location={_quote(params['url'])} protocols={protocols} latency={latency}"
        return f"{source} ! decodebin ! {convert} ! {appsink(True)}"
    if kind == "v4l2":
        caps = "video/x-raw" if params.get("format", "raw") == "raw" else "image/jpeg"
        for key in ("width", "height"):
            if params.get(key):
                caps += f",{key}={int(params[key])}"
        if params.get("fps"):
            caps += f",framerate={int(params['fps'])}/1"
        decode = ""
        if caps.startswith("image/jpeg"):
            decode = "nvv4l2decoder mjpeg=1 ! " if hw else "jpegdec ! "
        convert_here = convert if caps.startswith("image/jpeg") and hw else _TO_BGR_SW
        device = _quote(params.get("device", "/dev/video0"))
        return f"v4l2src device={device} ! {caps} ! {decode}{convert_here} ! {appsink(True)}"
    if kind == "csi":
        width, height, fps = int(params.get("width", 1920)), int(params.get("height", 1080)), int(params.get("fps", 30))
        caps = f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1"
        return f"nvarguscamerasrc sensor-id={int(params.get('sensor_id', 0))} ! {caps} ! {_TO_BGR_HW} ! {appsink(True)}"
    raise ValueError(f"no GStreamer pipeline for source type {kind!r}")
