"""Per-layer DLA analysis on networks whose outcome is known from the fact sheet."""

from __future__ import annotations

from typing import Any, Callable, Dict

import pytest

from tests.placement import nets

Analyse = Callable[..., Any]


def by_name(analysis: Any) -> Dict[str, Any]:
    return {n.name: n for n in analysis.nodes}


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("trt", ["8.5", "10.3"])
@pytest.mark.parametrize("build", [nets.resnet_style, nets.mobilenetv2_style])
def test_resnet_and_mobilenetv2_run_fully_on_orin_dla(
    analyse_model: Analyse, build: Any, trt: str, precision: str
) -> None:
    a = analyse_model(build(), precision=precision, trt=trt, gen=2)
    assert a.verdict == "dla", [(n.name, n.detail) for n in a.fallbacks]
    assert len(a.subgraphs) == 1 and a.transitions == 0
    assert all(n.device == "dla" for n in a.placed)
    assert a.macs > 10_000_000


def test_int8_verdict_mentions_calibration(analyse_model: Analyse) -> None:
    a = analyse_model(nets.resnet_style(), precision="int8")
    assert any("calibration cache" in r for r in a.reasons)


@pytest.mark.parametrize("build", [nets.resnet_style, nets.mobilenetv2_style])
def test_fp32_goes_to_gpu_with_precision_reason(analyse_model: Analyse, build: Any) -> None:
    a = analyse_model(build(), precision="fp32")
    assert a.verdict == "gpu" and not a.subgraphs
    assert {n.rule.id for n in a.placed} == {"general.precision"}
    assert "FP32" in a.reasons[0] and "FP16 or INT8" in a.reasons[0]


def test_global_average_pool_becomes_reduce_on_gpu(analyse_model: Analyse) -> None:
    a = analyse_model(nets.resnet_style(head="global"), trt="8.5")
    gap = by_name(a)["gap"]
    assert gap.layers == ("Reduce(AVG)",) and gap.device == "gpu" and gap.rule.id == "reduce.op"
    assert "AveragePool" in gap.detail  # says how to keep it on the DLA
    assert a.verdict == "dla_fallback" and len(a.fallbacks) == 1 and len(a.subgraphs) == 2


def test_groupnorm_is_fragmented_while_batchnorm_twin_is_not(analyse_model: Analyse) -> None:
    batch = analyse_model(nets.norm_net("batch"))
    group = analyse_model(nets.norm_net("group"))
    assert batch.verdict == "dla" and len(batch.subgraphs) == 1
    assert group.verdict == "fragmented"
    assert len(group.subgraphs) == 7 and group.transitions >= 2 * 6
    gn = by_name(group)
    assert gn["gn0"].rule.id == "layer.unsupported" and gn["gn0"].layers == ("Normalization",)
    assert gn["gn0_reshape"].rule.id == "shuffle.rank"
    # Raising the user's fragmentation limit turns the same split into "DLA with fallbacks".
    relaxed = analyse_model(nets.norm_net("group"), max_dla_subgraphs=8)
    assert relaxed.verdict == "dla_fallback" and len(relaxed.fallbacks) == 18


def test_oversized_kernel_reported_by_node(analyse_model: Analyse) -> None:
    a = analyse_model(nets.oversized_kernel())
    node = by_name(a)["Conv_57"]
    assert (node.device, node.rule.id, node.detail) == ("gpu", "conv.kernel", "kernel 37 > 32")
    assert by_name(a)["Conv_1"].device == "dla"


def test_unsupported_ops_reported_by_node(analyse_model: Analyse) -> None:
    a = analyse_model(nets.detector_tail())
    nodes = by_name(a)
    for name in ("mix", "nms"):
        assert nodes[name].device == "gpu" and nodes[name].rule.id == "layer.unsupported"
    assert "Einsum" in nodes["mix"].detail and "NonMaxSuppression" in nodes["nms"].detail
    assert nodes["backbone"].device == "dla"


def test_dynamic_spatial_dims_go_to_gpu_but_dynamic_batch_is_fixed(analyse_model: Analyse) -> None:
    dyn = analyse_model(nets.dynamic_hw())
    node = by_name(dyn)["conv_dyn"]
    assert node.rule.id == "general.static_shapes" and "dynamic shape" in node.detail
    assert dyn.verdict == "gpu"
    assert "stay dynamic" in dyn.notes[0]
    fixed = analyse_model(nets.dynamic_batch())
    assert fixed.verdict == "dla"
    assert fixed.notes == ["input 'input' is declared [N, 3, 32, 32]; the plan is built for batch 1"]


def test_softmax_differs_between_xavier_and_orin(analyse_model: Analyse) -> None:
    model = nets.single("Softmax", axis=1)
    xavier = by_name(analyse_model(model, trt="8.5", gen=1))["probe"]
    orin = by_name(analyse_model(model, trt="8.5", gen=2))["probe"]
    assert (xavier.device, xavier.rule.id) == ("gpu", "softmax.xavier")
    assert orin.device == "dla"
    old_opset = by_name(analyse_model(nets.single("Softmax", opset=11, axis=1)))["probe"]
    assert old_opset.rule.id == "softmax.opset"


@pytest.mark.parametrize(
    ("op", "kw", "trt", "rule"),
    [
        ("Div", {"consts": [(2.0, "float32")]}, "8.5", "eltwise.op"),
        ("HardSigmoid", {}, "10.3", "act.type"),
        ("HardSwish", {}, "10.3", "act.type"),
        ("Exp", {}, "10.3", "unary.op"),
        ("MaxPool", {"kernel_shape": [9, 9]}, "10.3", "pool.window"),
        (
            "ConvTranspose",
            {"consts": [([[[[0.0] * 3] * 3] * 16] * 16, "float32")], "pads": [1, 1, 1, 1]},
            "10.3",
            "deconv.padding",
        ),
        ("GlobalAveragePool", {}, "10.3", "reduce.op"),
        ("Pad", {"consts": [([0, 0, 1, 1, 0, 0, 1, 1], "int64")]}, "10.3", "layer.unsupported"),
    ],
)
def test_layer_rules_send_node_to_gpu(analyse_model: Analyse, op: str, kw: Dict[str, Any], trt: str, rule: str) -> None:
    node = by_name(analyse_model(nets.single(op, **kw), trt=trt))["probe"]
    assert (node.device, node.rule.id) == ("gpu", rule), node.detail


@pytest.mark.parametrize(
    ("op", "kw", "trt"),
    [
        ("Div", {"consts": [(2.0, "float32")]}, "10.3"),
        ("GlobalMaxPool", {}, "10.3"),
        ("LeakyRelu", {}, "8.5"),
        ("MaxPool", {"kernel_shape": [3, 3]}, "8.5"),
        ("Resize", {"consts": [([], "float32"), ([1, 1, 2, 2], "float32")], "mode": "nearest"}, "8.5"),
        ("Resize", {"opset": 10, "consts": [([1, 1, 2, 2], "float32")], "mode": "nearest"}, "10.3"),
    ],
)
def test_layers_accepted_on_dla(analyse_model: Analyse, op: str, kw: Dict[str, Any], trt: str) -> None:
    node = by_name(analyse_model(nets.single(op, **kw), trt=trt))["probe"]
    assert node.device == "dla", node.detail


def test_resize_with_runtime_sizes_goes_to_gpu(analyse_model: Analyse) -> None:
    kw = {
        "consts": [([], "float32"), ([1, 1, 3, 3], "float32")],
        "mode": "linear",
        "coordinate_transformation_mode": "asymmetric",
    }
    node = by_name(analyse_model(nets.single("Resize", **kw)))["probe"]
    assert node.rule.id == "resize.mode"


def test_recalled_rule_marks_are_kept(analyse_model: Analyse) -> None:
    node = by_name(analyse_model(nets.single("Sin")))["probe"]
    assert node.device == "dla" and node.rule.mark == "[REC] L"
    assert node.as_dict()["mark"] == "[REC] L"


def test_loadable_limit_sends_extra_subgraphs_to_gpu(analyse_model: Analyse) -> None:
    a = analyse_model(nets.norm_net("group", blocks=20), max_dla_subgraphs=32)
    assert len(a.subgraphs) == a.loadable_limit == 16
    over = [n for n in a.nodes if n.rule is not None and n.rule.id == "general.loadables"]
    assert over and all(n.device == "gpu" for n in over)


def test_no_dla_platform_puts_everything_on_gpu(analyse_model: Analyse) -> None:
    a = analyse_model(nets.mobilenetv2_style(), gen=None)
    assert a.verdict == "gpu" and {n.rule.id for n in a.placed} == {"general.no_dla"}


def test_gpu_fallback_off_rejects_partial_dla(analyse_model: Analyse) -> None:
    a = analyse_model(nets.oversized_kernel(), gpu_fallback=False)
    assert a.verdict == "gpu" and "gpu_fallback is off" in a.reasons[0]


def test_shape_arithmetic_is_folded_not_placed(analyse_model: Analyse) -> None:
    net = nets.Net("folded", shape=(1, 3, 32, 32))
    x = net.conv("input", 3, 8, name="conv")
    shape = net.op("Shape", [x], "shape_of")
    a = analyse_model(net.model(net.op("Reshape", [x, shape], "same_shape")))
    nodes = by_name(a)
    assert nodes["shape_of"].device == "build-time"
    assert nodes["same_shape"].device == "dla"
    assert a.verdict == "dla"


def test_convolution_buffer_check_depends_on_precision(analyse_model: Analyse) -> None:
    net = nets.Net("wide", shape=(1, 512, 16, 256))
    x = net.conv("input", 512, 64, k=3, name="wide_conv")
    model = net.model(x)
    fp16 = by_name(analyse_model(model, precision="fp16"))["wide_conv"]
    assert fp16.rule.id == "conv.cbuf" and fp16.detail == "needs 1 weight + 24 data banks > 16"
    assert by_name(analyse_model(model, precision="int8"))["wide_conv"].device == "dla"


@pytest.mark.parametrize(("kernel", "stride", "device"), [(2, 2, "dla"), (3, 2, "gpu")])
def test_transposed_conv_with_same_padding(analyse_model: Analyse, kernel: int, stride: int, device: str) -> None:
    import numpy as np

    net = nets.Net("up", shape=(1, 16, 32, 32))
    w = net.const(np.zeros((16, 16, kernel, kernel)))
    attrs = {"kernel_shape": [kernel, kernel], "strides": [stride, stride], "auto_pad": "SAME_UPPER"}
    node = by_name(analyse_model(net.model(net.op("ConvTranspose", ["input", w], "up", **attrs))))["up"]
    assert node.device == device, node.detail
