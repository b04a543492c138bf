from __future__ import annotations

import os
from pathlib import Path

from edged.control.paths import confinement_problem


def test_paths_inside_a_configured_directory_pass(tmp_path: Path) -> None:
    (tmp_path / "models" / "sub").mkdir(parents=True)
    (tmp_path / "models" / "sub" / "m.onnx").write_bytes(b"x")
    assert confinement_problem(str(tmp_path / "models" / "sub" / "m.onnx"), [str(tmp_path / "models")], "d") is None
    # A symlink that stays inside is fine.
    os.symlink(tmp_path / "models" / "sub" / "m.onnx", tmp_path / "models" / "link.onnx")
    assert confinement_problem(str(tmp_path / "models" / "link.onnx"), [str(tmp_path / "models")], "d") is None


def test_traversal_relative_nul_and_prefix_tricks_are_refused(tmp_path: Path) -> None:
    models = str(tmp_path / "models")
    os.makedirs(models)
    assert confinement_problem(models + "/../secret.onnx", [models], "d") == "'..' is not allowed"
    assert confinement_problem("models/m.onnx", [models], "d") == "must be an absolute path"
    assert confinement_problem(models + "/m\x00.onnx", [models], "d") == "contains a NUL character"
    # /x/models-evil is not inside /x/models.
    problem = confinement_problem(models + "-evil/m.onnx", [models], "control.model_dirs")
    assert problem is not None and problem.startswith("is outside control.model_dirs")
    assert confinement_problem(models + "/m.onnx", [], "control.model_dirs") is not None


def test_symlink_escapes_are_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (tmp_path / "secret.onnx").write_bytes(b"x")
    os.symlink(tmp_path / "secret.onnx", models / "escape.onnx")
    os.symlink(tmp_path, models / "up")
    for path in (models / "escape.onnx", models / "up" / "secret.onnx"):
        problem = confinement_problem(str(path), [str(models)], "control.model_dirs")
        assert problem is not None and f"resolves to {tmp_path / 'secret.onnx'}" in problem
