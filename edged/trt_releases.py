"""What a TensorRT release can do, decided from its version string alone.

For code that has no TensorRT to ask (offline placement, config checks on another host) and
for the backend's messages. Each fact names NVIDIA's source.
"""

from __future__ import annotations

from edged.versions import version_tuple

__all__ = ["version_tuple", "dla_supported", "no_dla_reason", "has_legacy_parsers", "LEGACY_PARSERS_TEXT"]


def dla_supported(version: str) -> bool:
    """False for TensorRT 11.0 to 11.3: "DLA was unavailable in TensorRT 11.0 through 11.3"
    (docs.nvidia.com/deeplearning/tensorrt/11.4.1/inference-library/work-with-dla.html);
    11.4.1 brings it back for Jetson AGX Orin on JetPack 7.2.2 or later."""
    return not (11, 0) <= version_tuple(version)[:2] < (11, 4)


def no_dla_reason(version: str) -> str:
    return (
        f"TensorRT {version} has no DLA support (DLA is unavailable in TensorRT 11.0 to 11.3; NVIDIA brings it "
        "back for AGX Orin with 11.4.1 on JetPack 7.2.2+); run the model on the GPU or use TensorRT 10.x"
    )


def has_legacy_parsers(version: str) -> bool:
    """CaffeParser and UffParser: bound up to 8.6 (python/src/parsers/pyCaffe.cpp and pyUff.cpp
    at NVIDIA/TensorRT v8.6.1) and gone from 9.0 on (only pyOnnx.cpp at v9.1.0)."""
    return version_tuple(version)[0] <= 8


LEGACY_PARSERS_TEXT = (
    "Caffe and UFF parsers exist up to TensorRT 8.6 and were removed in 9.0; TensorRT 8.5 (JetPack 5.1) and "
    "8.6 (JetPack 6.0) still have them"
)
