"""The rules table's versioning and marks, and comparing predictions with reported placement."""

from __future__ import annotations

import logging

import pytest

from edged.placement.observed import compare_reported, reconcile
from edged.placement.rules import TABLE_VERSION, rules_for
from tests.placement import nets
from tests.placement.conftest import run_analysis


def test_tables_differ_by_version_and_generation() -> None:
    t85, t103 = rules_for("8.5.2", 2), rules_for("10.3.0", 2)
    assert "Div" not in t85["eltwise.op"].params["allowed"] and "Div" in t103["eltwise.op"].params["allowed"]
    assert "pool.avg_xavier" in rules_for("8.5", 1).rules and "pool.avg_xavier" not in t85.rules
    assert t103.key == f"trt10.3/dla2/{TABLE_VERSION}" and t85.note is None


def test_jetpack_6_0_has_its_own_table_with_its_reason() -> None:
    t86 = rules_for("8.6.2", 2)
    assert t86.trt_version == "8.6" and t86.note is None and t86.key.startswith("trt8.6/dla2/")
    assert "Div/Pow are still rejected" in (t86.basis or "") and "8.6.12" in (t86.basis or "")
    assert "Div" not in t86["eltwise.op"].params["allowed"]  # a JetPack 6.0 log rejects Div
    assert t86["reduce.op"] == rules_for("8.5.2", 2)["reduce.op"]  # GlobalAveragePool on the GPU
    assert t86["conv.cbuf"].confidence == "H"  # the pre-check runs from 8.6.0
    assert rules_for("8.6.2", 1).trt_version == "8.5"  # no Xavier on JetPack 6


def test_neighbouring_versions_say_which_table_they_use() -> None:
    assert rules_for("9.3", 2).trt_version == "8.6" and "9.3" in (rules_for("9.3", 2).note or "")
    assert rules_for("10.7", 2).trt_version == "10.3"
    assert rules_for("10.3", 1).trt_version == "8.5"  # Xavier stops at 8.5


def test_low_confidence_and_recalled_rows_keep_their_mark() -> None:
    t = rules_for("10.3", 2)
    assert t["unary.op"].mark == "[REC] L"
    assert t["shuffle.rank"].mark == "[REC]"
    assert t["eltwise.compare"].mark == "L"
    assert t["conv.kernel"].mark == ""
    assert t["conv.kernel"].as_dict()["source"].startswith("H85")


def test_inspector_report_wins_and_differences_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    a = run_analysis(nets.oversized_kernel())
    # As the TensorRT backend reports an engine built for DLA core 1 (inspector rows).
    report = [
        {"layer": "{ForeignNode[Conv_1...Conv_57]}", "device": "dla1"},
        {"layer": "Relu_5", "device": "gpu"},
        {"layer": "Conv_57_out to nvm", "device": "gpu"},
    ]
    with caplog.at_level(logging.WARNING, logger="edged.placement.observed"):
        diffs = compare_reported(a, report, "inspector")
    got = {d.node: (d.predicted, d.reported, d.rule) for d in diffs}
    assert got == {"Conv_57": ("gpu", "dla", "conv.kernel"), "Relu_5": ("dla", "gpu", "")}
    assert "model model: inspector reports Conv_57 on dla, predicted gpu (rule conv.kernel)" in caplog.text


def test_matching_report_has_no_differences() -> None:
    a = run_analysis(nets.mobilenetv2_style())
    report = [{"name": n.name, "device": "dla0"} for n in a.placed]
    assert compare_reported(a, report, "parser") == []


def test_reconcile_recomputes_pieces_and_verdict_from_the_report() -> None:
    a = run_analysis(nets.oversized_kernel())
    assert a.verdict == "dla_fallback" and len(a.subgraphs) == 2
    fixed, diffs = reconcile(a, [{"name": "{ForeignNode[Conv_1...Relu_5]}", "device": "DLA"}], "parser")
    assert [d.node for d in diffs] == ["Conv_57"]
    assert fixed.verdict == "dla" and len(fixed.subgraphs) == 1 and fixed.transitions == 0
    node = {n.name: n for n in fixed.nodes}["Conv_57"]
    assert node.device == "dla" and node.detail.startswith("parser reports DLA; predicted GPU: kernel 37 > 32")
    assert a.verdict == "dla_fallback"  # the original is unchanged


def test_tensorrt_11_0_to_11_3_leaves_an_orin_without_dla() -> None:
    from types import SimpleNamespace

    from edged.placement.target import from_platform

    orin = SimpleNamespace(soc="tegra234", dla_cores=2, gpus=("Orin (ga10b)",), versions={"tensorrt": "11.1.0"})
    assert from_platform(orin).dla_cores == 0 and from_platform(orin).devices() == ["gpu"]
    orin.versions = {"tensorrt": "10.3.0"}
    assert from_platform(orin).devices() == ["dla0", "dla1", "gpu"]


def test_single_layer_dla_islands_are_mapped() -> None:
    """NVIDIA-AI-IOT/jetson_dla_tutorial's ModelGN log: "[DlaLayer] {ForeignNode[Conv_0]}" (one
    layer, no range) beside ranges; fused layer names end a range ("Gemm_15 + linear.bias + ...")."""
    from edged.placement.analysis import analyse
    from edged.placement.graph import graph_from_model

    graph = graph_from_model(nets.dla_tutorial_model_bn(), 32)
    a = analyse(graph, precision="int8", trt_version="10.3", dla_generation=2)
    report = [
        {"layer": "{ForeignNode[Conv_0]}", "device": "dla0"},
        {"layer": "{ForeignNode[Relu_1...Relu_7]}", "device": "dla0"},
        {"layer": "GlobalAveragePool_8", "device": "gpu"},
        {"layer": "{ForeignNode[Gemm_15 + linear.bias + (Unnamed Layer* 19) [Shuffle]]}", "device": "gpu"},
    ]
    diffs = compare_reported(a, report, "inspector")
    assert [(d.node, d.reported) for d in diffs] == [("Gemm_15", "gpu")]
    report[0] = {"layer": "{ForeignNode[Conv_0]}", "device": "gpu"}
    assert ("Conv_0", "gpu") in [(d.node, d.reported) for d in compare_reported(a, report, "inspector")]
