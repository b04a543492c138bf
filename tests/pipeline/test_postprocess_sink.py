"""Top-k ranked a batch at a time (the sinks: tests/pipeline/test_sinks.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.backends.base import TensorSpec
from edged.config.model import PluginConfig
from edged.pipeline.postprocess import ClassifyPostprocessor


def naive_top_k(row: np.ndarray, k: int) -> list:  # type: ignore[type-arg]
    order = sorted(range(len(row)), key=lambda c: -float(row[c]))[:k]
    return [(c, float(row[c])) for c in order]


def test_batch_top_k_equals_a_per_frame_sort(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"name{i}" for i in range(900)))  # fewer labels than classes
    config = PluginConfig("classify", {"top_k": 5, "softmax": True, "labels": str(labels)})
    post = ClassifyPostprocessor(config, [TensorSpec("logits", (None, 1000), "float32")])
    batch = np.random.default_rng(4).standard_normal((8, 1000)).astype(np.float32)
    batch[3, 950] = 50.0  # a winner beyond the labels
    got = [post({"logits": batch}, i) for i in range(8)]
    for i, result in enumerate(got):
        shifted = np.exp(batch[i] - batch[i].max())
        want = naive_top_k(shifted / shifted.sum(), 5)
        assert [(e["class"], e["score"]) for e in result["top_k"]] == [(c, np.float32(s)) for c, s in want]
        for entry in result["top_k"]:
            assert entry.get("label") == (f"name{entry['class']}" if entry["class"] < 900 else None)
    assert got[3]["top_k"][0] == {"class": 950, "score": 1.0}


@pytest.mark.parametrize("k", [1, 5, 16, 17, 40])  # argmax passes up to 16, a partition above
def test_top_k_equals_a_sort_at_every_k(k: int) -> None:
    post = ClassifyPostprocessor(PluginConfig("classify", {"top_k": k}), [TensorSpec("y", (None, 300), "float32")])
    batch = np.random.default_rng(k).standard_normal((3, 300)).astype(np.float32)
    kept = batch.copy()
    for i in range(3):
        assert [(e["class"], e["score"]) for e in post({"y": batch}, i)["top_k"]] == naive_top_k(kept[i], k)
    assert np.array_equal(batch, kept)  # the engine's outputs are left as they were


def test_top_k_ranks_nan_last_and_never_repeats_a_class() -> None:
    post = ClassifyPostprocessor(PluginConfig("classify", {"top_k": 3}), [TensorSpec("y", (None, 5), "float32")])
    batch = np.array(
        [[0.5, np.nan, 2.0, 1.0, -1.0], [1.0, -np.inf, -np.inf, 2.0, -np.inf], [3.0, 1.0, 3.0, 0.0, 2.0]],
        dtype=np.float32,
    )
    nan_row, inf_row, ties = (post({"y": batch}, i)["top_k"] for i in range(3))
    assert [(e["class"], e["score"]) for e in nan_row] == [(2, 2.0), (3, 1.0), (0, 0.5)]
    assert [e["class"] for e in inf_row][:2] == [3, 0] and inf_row[2]["score"] == -np.inf
    assert inf_row[2]["class"] in (1, 2, 4)
    assert [(e["class"], e["score"]) for e in ties] == [(0, 3.0), (2, 3.0), (4, 2.0)]


def test_a_reused_output_buffer_is_ranked_again() -> None:
    post = ClassifyPostprocessor(PluginConfig("classify", {"top_k": 1}), [TensorSpec("y", (None, 4), "float32")])
    buffer = np.array([[0.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    assert post({"y": buffer}, 0)["top_k"][0]["class"] == 1
    buffer[0] = [0.0, 0.0, 0.0, 1.0]  # a runner that writes each batch into the same array
    assert post({"y": buffer}, 0)["top_k"][0]["class"] == 3
