from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from edged.config import load_config, parse_config
from edged.config.schema import load_schema
from edged.errors import ConfigError

ISSUE_EXAMPLE = textwrap.dedent(
    """
    device: {id: cam-gate-3}
    plans: {cache_dir: /var/cache/edged/plans}
    mqtt: {host: broker.local, port: 1883}
    telemetry: {period_s: 5}
    models:
      - name: people
        path: /var/lib/edged/models/detector.onnx
        backend: onnxruntime
        precision: fp16
        device: auto
        batch: 4
        source: {type: synthetic, fps: 30}
        preprocess: {size: [224, 224], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], layout: nchw}
        postprocess: {type: classify, top_k: 5}
        sink: {type: jsonl, path: /var/lib/edged/results/people.jsonl}
    """
)


def _edged(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True, text=True, timeout=60)


def test_reference_shape_validates_and_means_what_it_says() -> None:
    config = parse_config(yaml.safe_load(ISSUE_EXAMPLE))
    assert config.device.id == "cam-gate-3"
    assert config.plans.cache_dir == "/var/cache/edged/plans"
    assert config.mqtt is not None and (config.mqtt.host, config.mqtt.port) == ("broker.local", 1883)
    assert config.telemetry.period_s == 5
    model = config.model("people")
    assert (model.backend, model.precision, model.device, model.batch) == ("onnxruntime", "fp16", "auto", 4)
    assert model.source.type == "synthetic" and model.source.get("fps") == 30
    assert model.preprocess.size == (224, 224)
    assert model.preprocess.mean == (0.485, 0.456, 0.406)
    assert model.preprocess.layout == "nchw"
    assert model.postprocess.type == "classify" and model.postprocess.get("top_k") == 5
    assert model.sink.get("path") == "/var/lib/edged/results/people.jsonl"


def test_defaults_come_from_the_schema() -> None:
    config = parse_config({"device": {"id": "d1"}, "models": [{"name": "m", "path": "/m.onnx"}]})
    model = config.models[0]
    schema_model = load_schema()["definitions"]["model"]["properties"]
    assert model.batch == schema_model["batch"]["default"]
    assert model.queue_size == schema_model["queue_size"]["default"]
    assert config.plans.cache_dir == "/var/cache/edged/plans"
    assert config.mqtt is None
    assert model.source.type == "synthetic" and model.source.get("fps") == 30


def test_device_defaults_apply_to_models_unless_overridden() -> None:
    doc = {
        "device": {"id": "d1", "defaults": {"precision": "int8", "backend": "tensorrt"}},
        "models": [{"name": "a", "path": "/a.onnx"}, {"name": "b", "path": "/b.onnx", "precision": "fp16"}],
    }
    config = parse_config(doc)
    assert [(m.backend, m.precision) for m in config.models] == [("tensorrt", "int8"), ("tensorrt", "fp16")]


def test_every_mistake_is_reported_with_its_key_path() -> None:
    doc = yaml.safe_load(ISSUE_EXAMPLE)
    doc["models"].append(dict(doc["models"][0], name="second", precision="fp8"))
    doc["models"][0]["colour"] = "red"
    doc["telemetry"]["period_s"] = "often"
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.problems == [
        "models[0].colour: unknown key",
        "models[1].precision: 'fp8' is not one of fp32, fp16, int8",
        "telemetry.period_s: 'often' is not of type number",
    ]


def test_plugin_sections_reject_keys_of_other_types() -> None:
    doc = {"device": {"id": "d"}, "models": [{"name": "m", "path": "/m", "source": {"type": "images", "fps": 3}}]}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.problems == ["models[0].source.path: required key is missing"]
    doc["models"][0]["source"] = {"type": "synthetic", "path": "/x"}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.problems == ["models[0].source.path: unknown key"]


def test_duplicate_model_names_are_rejected() -> None:
    doc = {"device": {"id": "d"}, "models": [{"name": "m", "path": "/a"}, {"name": "m", "path": "/b"}]}
    with pytest.raises(ConfigError, match=r"models\[1\].name: 'm' is already used by models\[0\]"):
        parse_config(doc)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "edged.yaml"
    path.write_text(
        "device: {id: d}\nplans: {cache_dir: plans}\n"
        "models: [{name: m, path: ../m.onnx, sink: {type: jsonl, path: out/r.jsonl}}]\n"
    )
    config = load_config(path)
    assert config.models[0].path == str(tmp_path / "m.onnx")
    assert config.models[0].sink.get("path") == str(tmp_path / "cfg" / "out/r.jsonl")
    assert config.plans.cache_dir == str(tmp_path / "cfg" / "plans")


def test_check_config_cli_lists_three_mistakes_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent(
            """
            device: {id: cam-1}
            models:
              - name: people
                path: /m.onnx
                batch: 0
                device: dla7
                sink: {type: jsonl}
            """
        )
    )
    result = _edged("check-config", str(bad))
    assert result.returncode == 2
    assert "models[0].batch: 0 is less than the minimum of 1" in result.stderr
    assert "models[0].device: 'dla7' is not one of auto, gpu, dla, dla0, dla1, cpu" in result.stderr
    assert "models[0].sink.path: required key is missing" in result.stderr


def test_check_config_cli_accepts_a_valid_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(ISSUE_EXAMPLE)
    result = _edged("check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert "ok (1 models, device cam-gate-3)" in result.stdout
    assert "models[0].path: no such file" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "the file is empty"), ("- a\n- b\n", "expected a mapping"), ("device: {id: [\n", "invalid YAML")],
)
def test_unparseable_files_name_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = _edged("check-config", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and expected in result.stderr


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = _edged("check-config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr


def test_metrics_and_home_assistant_are_off_by_default_and_checked() -> None:
    config = parse_config({"device": {"id": "d1"}, "models": []})
    assert not config.metrics.enabled and config.metrics.address == "127.0.0.1"
    assert not config.home_assistant.discovery
    doc = {
        "device": {"id": "d1"},
        "models": [],
        "metrics": {"http": True, "port": 0, "textfile": "/var/lib/node-exporter/edged.txt"},
        "home_assistant": {"discovery": True, "prefix": "home/assistant/"},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.problems == [
        "home_assistant: needs the mqtt section",
        "home_assistant.prefix: 'home/assistant/' does not match ^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        "metrics.port: 0 is less than the minimum of 1",
        "metrics.textfile: '/var/lib/node-exporter/edged.txt' does not match ^/.*[^/]\\.prom$",
    ]


_BOUND_MISTAKES = {
    "device": {"id": ""},
    "models": [
        {"name": "m", "path": "/m.onnx", "batch": 0, "sink": {"type": "stdout"}, "sources": []},
        {"name": "n" * 300, "path": "/n.onnx", "batch": 100000, "sink": {"type": "stdout"}},
    ],
}


def test_limit_messages_do_not_depend_on_the_jsonschema_release() -> None:
    """A device validates with Debian's python3-jsonschema, a development venv may hold a newer
    one that words size and range errors differently: the operator must read the same text."""
    debian = "/usr/bin/python3"
    probe = subprocess.run(
        [debian, "-c", "import importlib.metadata as m; print(m.version('jsonschema'))"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"{debian} has no jsonschema: {probe.stderr.strip()[-200:]}")
    script = textwrap.dedent(
        """
        import json, sys
        from edged.config import parse_config
        from edged.errors import ConfigError
        try:
            parse_config(json.loads(sys.argv[1]))
        except ConfigError as e:
            print(json.dumps(e.problems))
        """
    )
    root = Path(__file__).resolve().parents[2]
    program = f"import sys; sys.path.insert(0, {str(root)!r}); exec({script!r})"
    there = subprocess.run(
        [debian, "-I", "-c", program, json.dumps(_BOUND_MISTAKES)],
        capture_output=True,
        text=True,
    )
    assert there.returncode == 0, there.stderr
    with pytest.raises(ConfigError) as here:
        parse_config(_BOUND_MISTAKES)
    assert json.loads(there.stdout) == here.value.problems, f"Debian's jsonschema {probe.stdout.strip()}"
    assert "models[0].sources: [] should be non-empty" in here.value.problems
    assert "models[0].batch: 0 is less than the minimum of 1" in here.value.problems
