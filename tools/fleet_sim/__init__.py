"""Simulated edged devices for fleet tests and benchmarks (see standin.py, device.py, run.py)."""
