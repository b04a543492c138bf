"""ONNX Runtime backend: the backend that runs everywhere, including CI."""
