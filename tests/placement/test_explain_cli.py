"""``edged placement explain``: text for people, JSON for tools."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from edged.cli import EXIT_OK, EXIT_USAGE, main
from tests.placement import nets


@pytest.fixture()
def models(tmp_path: Path) -> dict:
    out = {}
    for name, model in (
        ("resnet", nets.resnet_style(head="global")),
        ("mbv2", nets.mobilenetv2_style()),
        ("detector", nets.detector_tail()),
        ("oversized", nets.oversized_kernel()),
    ):
        out[name] = str(tmp_path / f"{name}.onnx")
        onnx.save(model, out[name])
    return out


def test_text_explains_each_layer_in_plain_words(models: dict, capsys: pytest.CaptureFixture) -> None:
    argv = ["placement", "explain", "--platform", "agx-orin-64gb", models["resnet"], models["oversized"]]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert "Platform agx-orin-64gb: tegra234, 2 DLA core(s), TensorRT 10.3" in out
    assert "low-power inference engine" in out  # what a DLA is, for readers new to it
    assert "Verdict: DLA with 1 layer(s) falling back to the GPU" in out
    assert "GlobalAveragePool becomes a Reduce layer" in out and "[reduce.op, confidence M, [REC]]" in out
    assert "kernel 37 > 32  [conv.kernel, confidence H]" in out
    assert "DLA (piece 1)" in out and "GPU<->DLA hand-overs: 2" in out
    assert "Unconfirmed rules used" in out and "reduce.op" in out
    assert "Predicted utilisation (cap 90%): dla0" in out
    assert "ForeignNode" not in out  # no TensorRT log jargon


def test_json_has_layers_rules_and_placement(models: dict, capsys: pytest.CaptureFixture) -> None:
    argv = [
        "placement",
        "explain",
        "--platform",
        "orin-nx-8gb",
        "--json",
        "--target-fps",
        "30",
        models["mbv2"],
        models["detector"],
    ]
    assert main(argv) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["platform"]["devices"] == ["dla0", "gpu"]
    det = {n["name"]: n for n in doc["models"]["detector"]["nodes"]}
    assert det["nms"]["device"] == "gpu" and det["nms"]["rule"] == "layer.unsupported"
    assert doc["models"]["mbv2"]["verdict"] == "dla"
    used = doc["models"]["detector"]["rules_used"]
    assert used["shuffle.rank"]["mark"] == "[REC]" and used["layer.unsupported"]["confidence"] == "M"
    placed = doc["placement"]["models"]
    assert placed["mbv2"]["devices"] == ["dla0"] and placed["mbv2"]["met"]
    assert set(doc["placement"]["utilisation"]) == {"dla0", "gpu"}


def test_xavier_uses_85_rules(models: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(["placement", "explain", "--platform", "agx-xavier", "--json", models["mbv2"]]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["models"]["mbv2"]["rules"].startswith("trt8.5/dla1/")


def test_fp32_is_summarised_once(models: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(["placement", "explain", "--platform", "agx-orin-64gb", "--precision", "fp32", models["mbv2"]]) == 0
    out = capsys.readouterr().out
    assert "All 65 layers run on the GPU: model is built in FP32" in out
    assert "set precision: fp16 or int8" in out


def test_bad_inputs_exit_2_with_a_clear_message(models: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["placement", "explain", "--platform", "nope", models["mbv2"]]) == EXIT_USAGE
    assert "not a known platform" in capsys.readouterr().err
    missing = str(tmp_path / "missing.onnx")
    assert main(["placement", "explain", "--platform", "agx-orin-64gb", missing]) == EXIT_USAGE
    assert f"{missing}: model file not found" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert main(["placement", "explain", "--platform", "agx-orin-64gb", str(junk)]) == EXIT_USAGE
    assert "not a readable ONNX model" in capsys.readouterr().err


JETSON = Path(__file__).resolve().parents[1] / "fixtures" / "jetson"


def test_a_jetpack5_device_tree_without_tensorrt_is_analysed_with_85_and_says_why(
    models: dict, capsys: pytest.CaptureFixture
) -> None:
    assert main(["placement", "explain", "--platform", str(JETSON / "agx-orin-64gb-jp5"), models["mbv2"]]) == 0
    out = capsys.readouterr().out
    assert "TensorRT 8.5 (L4T R35.4.1 → JetPack 5.1.2 default)" in out
    assert (
        main(["placement", "explain", "--json", "--platform", str(JETSON / "agx-orin-64gb-jp5"), models["mbv2"]]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["models"]["mbv2"]["rules"].startswith("trt8.5/dla2/")
    assert doc["platform"]["tensorrt_origin"] == "L4T R35.4.1 → JetPack 5.1.2 default"


@pytest.mark.parametrize(
    ("preset", "trt"),
    [
        ("agx-orin-64gb-jp5", "8.5"),
        ("agx-orin-32gb-jp6.0", "8.6"),
        ("orin-nx-8gb-jp6.0", "8.6"),
        ("orin-nano-4gb-jp6.1", "10.3"),
        ("orin-nx-16gb", "10.3"),
        ("xavier-nx-jp5", "8.5"),
        ("agx-thor-jp7", "10.13"),
    ],
)
def test_presets_per_jetpack_carry_its_tensorrt(
    preset: str, trt: str, capsys: pytest.CaptureFixture, models: dict
) -> None:
    assert main(["placement", "explain", "--json", "--platform", preset, models["mbv2"]]) == EXIT_OK
    platform = json.loads(capsys.readouterr().out)["platform"]
    assert platform["tensorrt"] == trt and "JetPack" in platform["tensorrt_origin"]


def test_tensorrt_can_be_named_explicitly(models: dict, capsys: pytest.CaptureFixture) -> None:
    argv = ["placement", "explain", "--json", "--platform", "agx-orin-64gb", "--tensorrt", "8.5.2", models["mbv2"]]
    assert main(argv) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert (doc["platform"]["tensorrt"], doc["platform"]["tensorrt_origin"]) == ("8.5", "--tensorrt")
    assert doc["models"]["mbv2"]["rules"].startswith("trt8.5/")
    assert main(["placement", "explain", "--platform", "agx-orin-64gb", "--tensorrt", "eight", models["mbv2"]]) == 2
    assert "--tensorrt 'eight': not a TensorRT version" in capsys.readouterr().err
    assert main(["placement", "explain", "--platform", "x86-cpu", "--tensorrt", "10.3", models["mbv2"]]) == 2
    assert "has no GPU" in capsys.readouterr().err
