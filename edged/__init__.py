"""edged: managed edge-inference daemon for NVIDIA Jetson, dGPU hosts and plain CPUs."""

__all__ = ["__version__"]

__version__ = "0.1.0"
