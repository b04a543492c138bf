"""Continuous inference: source -> preprocess -> batcher -> runner -> postprocess -> sink."""
