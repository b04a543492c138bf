"""edgectl's parts that need no broker: push files, broker options, keygen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edged.control.canonical import load_private_key, load_public_key, sign_payload, verify_signature
from edged.ctl.main import broker_options, build_parser, load_push_file, main
from edged.errors import EdgedError


def test_push_files_envelopes_and_bare_configs(tmp_path: Path) -> None:
    envelope = tmp_path / "patch.json"
    envelope.write_text(json.dumps({"version": 4, "patch": {"telemetry": {"period_s": 2}}}))
    assert load_push_file(str(envelope), None) == {"version": 4, "patch": {"telemetry": {"period_s": 2}}}
    bare = tmp_path / "config.yaml"
    bare.write_text("version: 6\nmodels: []\n")
    assert load_push_file(str(bare), None) == {"version": 6, "config": {"version": 6, "models": []}}
    assert load_push_file(str(bare), 9)["version"] == 9
    bare.write_text("models: []\n")
    with pytest.raises(EdgedError, match="needs an integer version"):
        load_push_file(str(bare), None)


def test_broker_options_from_an_edged_config_with_flags_winning(tmp_path: Path) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text(
        "mqtt:\n  host: broker.lan\n  port: 8883\n  username: ops\n  password: pw\n  protocol: '3.1.1'\n"
        "  tls: {cafile: /etc/ca.pem}\n"
    )
    parser = build_parser()
    options = broker_options(parser.parse_args(["--config", str(config), "devices"]))
    assert (options.host, options.port, options.username, options.password) == ("broker.lan", 8883, "ops", "pw")
    assert options.protocol == "3.1.1" and options.tls and options.cafile == "/etc/ca.pem"
    options = broker_options(parser.parse_args(["--config", str(config), "--port", "1884", "devices"]))
    assert options.port == 1884 and options.host == "broker.lan"
    assert broker_options(parser.parse_args(["devices"])).host == "localhost"


def test_broker_options_read_the_daemons_own_mqtt_section(tmp_path: Path) -> None:
    """The spelling of edged's schema: tls.ca_file and a password_file only its owner may read."""
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    config = tmp_path / "edged.yaml"
    config.write_text(
        f"mqtt:\n  host: b\n  username: edge\n  password_file: {secret}\n  tls: {{ca_file: /etc/ca.pem}}\n"
    )
    args = build_parser().parse_args(["--config", str(config), "devices"])
    options = broker_options(args)
    assert (options.username, options.password, options.cafile, options.tls) == ("edge", "s3cret", "/etc/ca.pem", True)
    secret.chmod(0o644)
    with pytest.raises(EdgedError, match=r"mqtt.password_file: .* is accessible by group or others"):
        broker_options(args)


def test_keygen_writes_a_private_key_whose_public_half_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_path = tmp_path / "push.key"
    assert main(["keygen", str(key_path)]) == 0
    public = load_public_key(capsys.readouterr().out.strip())
    payload = {"version": 1, "patch": {}}
    payload["signature"] = sign_payload(payload, load_private_key(key_path.read_bytes()))  # type: ignore[assignment]
    verify_signature(payload, [public])
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    assert main(["keygen", str(key_path)]) == 2  # never overwrites a key


def test_push_needs_exactly_one_target(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"version": 1, "patch": {}}')
    assert main(["push", "node-1", "--group", "lab", str(tmp_path / "p.json")]) == 2
