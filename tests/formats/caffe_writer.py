"""Writes small Caffe models for tests: a prototxt and a .caffemodel whose NetParameter
is encoded with a tiny protobuf wire-format writer (field numbers from caffe.proto:
NetParameter.name 1, .layer 100; LayerParameter.name 1, .type 2, .blobs 7;
BlobProto.shape 7, .data 5 packed floats; BlobShape.dim 1 packed int64)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

__all__ = ["TinyCaffeNet", "encode_net", "write_tiny_net"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


def _bytes(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def _blob(array: np.ndarray) -> bytes:
    dims = b"".join(_varint(int(d)) for d in array.shape)
    shape = _bytes(1, dims)  # BlobShape.dim, packed
    data = struct.pack(f"<{array.size}f", *array.astype(np.float32).ravel())
    return _bytes(7, shape) + _bytes(5, data)


def encode_net(name: str, layers: List[Tuple[str, str, List[np.ndarray]]]) -> bytes:
    """A binary NetParameter holding each layer's name, type and weight blobs."""
    out = _bytes(1, name.encode())
    for layer_name, layer_type, blobs in layers:
        body = _bytes(1, layer_name.encode()) + _bytes(2, layer_type.encode())
        body += b"".join(_bytes(7, _blob(b)) for b in blobs)
        out += _bytes(100, body)
    return out


PROTOTXT = """\
name: "tiny"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer {
  name: "conv1"  type: "Convolution"  bottom: "data"  top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1 }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer {
  name: "fc"  type: "InnerProduct"  bottom: "conv1"  top: "fc"
  inner_product_param { num_output: 5 }
}
"""


class TinyCaffeNet:
    """Convolution 3x3 (3->4, pad 1) -> ReLU -> InnerProduct (256->5), with seeded weights
    and a numpy reference of the same arithmetic."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.conv_w = rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
        self.conv_b = rng.normal(0, 0.1, (4,)).astype(np.float32)
        self.fc_w = rng.normal(0, 0.1, (5, 4 * 8 * 8)).astype(np.float32)
        self.fc_b = rng.normal(0, 0.1, (5,)).astype(np.float32)

    def weights(self) -> bytes:
        return encode_net(
            "tiny",
            [("conv1", "Convolution", [self.conv_w, self.conv_b]), ("fc", "InnerProduct", [self.fc_w, self.fc_b])],
        )

    def reference(self, x: np.ndarray) -> np.ndarray:
        n, _, h, w = x.shape
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        conv = np.zeros((n, 4, h, w), np.float64)
        for dy in range(3):
            for dx in range(3):
                window = padded[:, :, dy : dy + h, dx : dx + w]
                conv += np.einsum("nchw,oc->nohw", window, self.conv_w[:, :, dy, dx])
        conv += self.conv_b[None, :, None, None]
        relu = np.maximum(conv, 0.0)
        return relu.reshape(n, -1) @ self.fc_w.T.astype(np.float64) + self.fc_b


def write_tiny_net(folder: Path, seed: int = 0) -> Dict[str, Path]:
    net = TinyCaffeNet(seed)
    prototxt = folder / "tiny.prototxt"
    caffemodel = folder / "tiny.caffemodel"
    prototxt.write_text(PROTOTXT)
    caffemodel.write_bytes(net.weights())
    return {"prototxt": prototxt, "caffemodel": caffemodel}
