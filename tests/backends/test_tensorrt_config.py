"""Config keys of the TensorRT backend and calibration, down to BuildOptions, and one model
served through the daemon on the TensorRT TEST DOUBLE (no GPU, no TensorRT here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from edged.config.loader import load_config, parse_config
from edged.daemon import Daemon
from edged.errors import ConfigError
from edged.model_loading import build_options


def _trt_model(doc: Dict[str, Any], **keys: Any) -> Dict[str, Any]:
    model = doc["models"][0]
    model.update(backend="tensorrt", device="dla1", precision="int8", batch=2, **keys)
    return doc


def test_config_keys_reach_build_options(demo_config: Dict[str, Any], demo_assets: Path, tmp_path: Path) -> None:
    doc = _trt_model(
        demo_config,
        calibration={"images": "calib", "max_images": 3},
        tensorrt={"workspace_mib": 256, "gpu_fallback": False, "dla_pools_kib": {"managed_sram": 1024},
                  "layer_devices": {"fc": "gpu"}},
    )  # fmt: skip
    (tmp_path / "calib").symlink_to(demo_assets / "images")
    path = tmp_path / "edged.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    config = load_config(path)
    options = build_options(config.models[0], config.plans.cache_dir)
    assert options.device == "dla1" and options.precision == "int8" and not options.gpu_fallback
    assert options.workspace_bytes == 256 << 20
    assert options.extra["calibration_images"] == str(tmp_path / "calib")  # relative to the config file
    assert options.extra["calibration_max_images"] == 3
    assert options.extra["dla_pools"] == {"managed_sram": 1 << 20}
    assert options.extra["layer_devices"] == {"fc": "gpu"}
    assert options.extra["state_dir"] == config.plans.cache_dir
    json.dumps(options.as_key_document())  # every key is plain data for the plan cache key


def test_bad_tensorrt_keys_name_their_path(demo_config: Dict[str, Any]) -> None:
    doc = _trt_model(demo_config, tensorrt={"dla_pools_kib": {"managed_sram": 5}, "layer_devices": {"fc": "cpu"}})
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    text = str(info.value)
    assert "models[0].tensorrt.dla_pools_kib.managed_sram" in text
    assert "models[0].tensorrt.layer_devices.fc" in text


def test_onnxruntime_defaults_are_unchanged(demo_config: Dict[str, Any]) -> None:
    options = build_options(parse_config(demo_config).models[0])
    assert options.extra == {} and options.gpu_fallback and options.workspace_bytes == 1 << 30


def test_daemon_serves_a_model_on_the_tensorrt_double(
    demo_config: Dict[str, Any], demo_assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edged.cuda
    from tests.trt_double import HostCuda, make_tensorrt

    trt = make_tensorrt("10.3", dla_cores=2)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(edged.cuda, "load_runtime", lambda *a, **k: HostCuda())
    doc = _trt_model(demo_config, calibration={"images": str(demo_assets / "images")})
    doc["models"][0]["source"]["count"] = 8
    config = parse_config(doc)
    pipeline = Daemon(config).models.load_model(config.models[0])
    assert pipeline.runner.inputs[0].shape == (2, 3, 64, 64)  # DLA: static batch
    pipeline.start()
    assert pipeline.wait(timeout=30)
    pipeline.stop()
    assert pipeline.stats.frames_out == 8
    assert {core for core, _ in trt._double.executions} == {1}
    assert list(Path(config.plans.cache_dir, "tensorrt", "calibration").iterdir())
