"""edgectl's download entries: the hash and size of the operator's local file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edged.ctl.main import main
from edged.ctl.upload import attach_files
from edged.errors import EdgedError


def test_attach_files_writes_url_hash_and_size(tmp_path: Path) -> None:
    local = tmp_path / "my model.onnx"
    local.write_bytes(b"weights")
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    payload = {"version": 3, "patch": {"models": [{"name": "m", "postprocess": {"type": "classify"}}]}}
    attach_files(payload, "model", [f"m={local}"], "https://files.example/fleet/")
    attach_files(payload, "labels", [f"m={labels}"], "https://files.example/fleet")
    model = payload["patch"]["models"][0]  # type: ignore[index]
    assert model["path"] == {
        "url": "https://files.example/fleet/my%20model.onnx",
        "sha256": hashlib.sha256(b"weights").hexdigest(),
        "size": 7,
    }
    assert model["postprocess"]["labels"]["url"] == "https://files.example/fleet/labels.txt"
    with pytest.raises(EdgedError, match="the push has no model named 'other'"):
        attach_files(payload, "model", [f"other={local}"], "https://files.example")
    with pytest.raises(EdgedError, match="expected NAME=FILE"):
        attach_files(payload, "model", [str(local)], "https://files.example")
    with pytest.raises(EdgedError, match="cannot read"):
        attach_files(payload, "model", [f"m={tmp_path / 'missing'}"], "https://files.example")


def test_model_without_base_url_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"version": 1, "patch": {"models": []}}')
    assert main(["push", "node-1", str(tmp_path / "p.json"), "--model", "m=x.onnx"]) == 2
