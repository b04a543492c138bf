"""The ``edgectl`` command line.

Exit codes: 0 every addressed device applied the push; 1 a device rejected it or rolled
it back; 2 usage error; 3 no device answered in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from edged.ctl import fleet_commands
from edged.ctl.fleet_commands import load_push_file
from edged.ctl.session import BrokerOptions, Received, Session, SessionError, options_from_section
from edged.ctl.views import watch
from edged.errors import EdgedError

__all__ = ["main", "build_parser", "load_push_file", "broker_options"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_ANSWER = 0, 1, 2, 3
GOOD = ("applied", "duplicate")


def _read_mqtt_section(path: str) -> Dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EdgedError(f"{path}: cannot read: {exc}") from exc
    section = doc.get("mqtt") if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise EdgedError(f"{path}: no mqtt section")
    return section


def broker_options(args: argparse.Namespace) -> BrokerOptions:
    """Command-line flags win over the ``mqtt`` section of ``--config``."""
    base = options_from_section(_read_mqtt_section(args.config) if args.config else {})
    password = args.password or os.environ.get("EDGECTL_PASSWORD")
    return BrokerOptions(
        host=args.host or base.host,
        port=args.port or base.port,
        protocol=args.mqtt_version or base.protocol,
        username=args.username or base.username,
        password=password or base.password,
        tls=bool(args.tls or base.tls or args.cafile),
        cafile=args.cafile or base.cafile,
        certfile=args.certfile or base.certfile,
        keyfile=args.keyfile or base.keyfile,
        insecure=bool(args.insecure),
        keepalive_s=base.keepalive_s,
    )


def cmd_push(args: argparse.Namespace) -> int:
    args.device = args.targets[0] if len(args.targets) == 2 else None
    args.file = args.targets[-1]
    if len(args.targets) > 2 or bool(args.device) == bool(args.group):
        print("edgectl push: give DEVICE FILE or --group G FILE", file=sys.stderr)
        return EXIT_USAGE
    if (args.model or args.labels) and not args.base_url:
        print("edgectl push: --model and --labels need --base-url", file=sys.stderr)
        return EXIT_USAGE
    return fleet_commands.push(args, broker_options(args))


def cmd_command(args: argparse.Namespace) -> int:
    request_id = uuid.uuid4().hex
    # verb, target and the send time are what a signature binds a command to: the device
    # refuses it on another topic, for another device, outside its time window or twice
    # (edged/control/commands.py).
    request: Dict[str, Any] = {"id": request_id, "verb": args.verb, "target": args.device, "ts": time.time()}
    if args.models:
        request["models"] = [m for m in args.models.split(",") if m]
    if args.sign:
        from edged.control.canonical import load_private_key, sign_payload

        request["signature"] = sign_payload(request, load_private_key(Path(args.sign).read_bytes()))
    session = Session(broker_options(args), client_id=f"edgectl-{request_id[:12]}")
    session.connect(args.timeout)
    result_topic = f"edged/{args.device}/cmd/{args.verb}/result"
    try:
        session.subscribe(result_topic)
        time.sleep(0.1)
        session.publish(f"edged/{args.device}/cmd/{args.verb}", json.dumps(request).encode(), qos=1)
        for result in _replies(session, request_id, args.timeout):
            print(json.dumps(result, indent=2, sort_keys=True))
            return EXIT_OK if result.get("status") == "ok" else EXIT_FAILED
    finally:
        session.close()
    print(f"edgectl: no answer on {result_topic} within {args.timeout:g}s", file=sys.stderr)
    return EXIT_NO_ANSWER


def _replies(session: Session, request_id: str, timeout_s: float) -> Iterator[Dict[str, Any]]:
    """The JSON results answering ``request_id`` that arrive within ``timeout_s``; an
    interim ``downloading`` result shows the device is working and restarts the wait."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = _next(session, deadline)
        if msg is None:
            continue
        result = msg.result_for(request_id)
        if result is not None:
            if result.get("status") == "downloading":
                deadline = time.monotonic() + timeout_s
            yield result


def _next(session: Session, deadline: float) -> Optional[Received]:
    import queue

    try:
        return session.messages.get(timeout=max(0.01, min(0.2, deadline - time.monotonic())))
    except queue.Empty:
        return None


def cmd_devices(args: argparse.Namespace) -> int:
    return fleet_commands.devices(args, broker_options(args))


def cmd_watch(args: argparse.Namespace) -> int:
    session = Session(broker_options(args), client_id=f"edgectl-{uuid.uuid4().hex[:12]}")
    session.connect(args.timeout)
    try:
        return watch(session, args.device, args.count, args.wide)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        session.close()


def cmd_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from edged.control.canonical import public_key_text

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    print(public_key_text(key))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgectl",
        description="Push configs to edged devices over MQTT and watch them.",
        epilog="Exit codes: 0 ok, 1 a device rejected or rolled back, 2 usage, 3 no answer in time.",
    )
    broker = parser.add_argument_group("broker")
    broker.add_argument("--config", metavar="FILE", help="reuse the mqtt section of an edged config file")
    broker.add_argument("--host", help="broker host (default localhost)")
    broker.add_argument("--port", type=int, help="broker port (default 1883)")
    broker.add_argument(
        "--mqtt-version", choices=["auto", "5", "3.1.1"], help="protocol (default auto: 5, else 3.1.1 as edged does)"
    )
    broker.add_argument("--username")
    broker.add_argument("--password", help="or set EDGECTL_PASSWORD")
    broker.add_argument("--tls", action="store_true", help="connect with TLS")
    broker.add_argument("--cafile", help="CA certificate(s) to verify the broker")
    broker.add_argument("--certfile", help="client certificate")
    broker.add_argument("--keyfile", help="client key")
    broker.add_argument("--insecure", action="store_true", help="do not check the broker's host name")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds to wait (default 10)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    push = sub.add_parser("push", help="push a config or merge patch and print each device's result")
    push.add_argument(
        "targets", nargs="+", metavar="[DEVICE] FILE", help="device id (or --group) and a JSON/YAML push file"
    )
    push.add_argument("--group", help="push to a fleet group instead of a device")
    push.add_argument("--version", type=int, help="set the push version")
    push.add_argument("--sign", metavar="KEY", help="Ed25519 private key (PEM) to sign with")
    push.add_argument("--expect", type=int, default=0, metavar="N", help="group: wait for N devices")
    push.add_argument(
        "--canary", type=int, default=0, metavar="N", help="group: waves of N, 2N, 4N... devices; stop when one fails"
    )
    push.add_argument("--quiet", action="store_true", help="print only the results that are not 'applied'")
    push.add_argument("--base-url", help="where --model/--labels files are served (you upload them there)")
    push.add_argument(
        "--model", action="append", default=[], metavar="NAME=FILE", help="model NAME's file: hashed, fetched by URL"
    )
    push.add_argument(
        "--labels", action="append", default=[], metavar="NAME=FILE", help="model NAME's labels: hashed, fetched by URL"
    )
    push.set_defaults(func=cmd_push)

    command = sub.add_parser("cmd", help="run reload, rebuild-plans or snapshot on a device; print the result")
    command.add_argument("device")
    command.add_argument("verb", choices=["reload", "rebuild-plans", "snapshot"])
    command.add_argument("--models", help="rebuild-plans: comma-separated model names (default: all)")
    command.add_argument("--sign", metavar="KEY", help="Ed25519 private key (PEM) to sign with")
    command.set_defaults(func=cmd_command)

    watched = sub.add_parser("watch", help="live telemetry of a device: one row per model, refreshed")
    watched.add_argument("device")
    watched.add_argument("--count", type=int, default=0, help="stop after N telemetry messages (0: never)")
    watched.add_argument("--wide", action="store_true", help="more columns: frames, batch fill, source, drop reasons")
    watched.set_defaults(func=cmd_watch)

    devices = sub.add_parser("devices", help="devices, from a presence query and their retained status")
    devices.add_argument("--wait", type=float, default=2.0, metavar="S", help="longest wait for answers (default 2)")
    devices.add_argument("--expect", type=int, default=0, metavar="N", help="stop as soon as N devices answered")
    devices.add_argument("--group", help="only members of this group")
    devices.add_argument("--state", help="only devices in this state (online, degraded, offline, unanswered)")
    devices.add_argument("--version", type=int, help="only devices running this config version")
    devices.add_argument("--software", metavar="VERSION", help="only devices running this edged version")
    devices.add_argument("--wide", action="store_true", help="more columns: kernel, groups, why offline")
    devices.set_defaults(func=cmd_devices)

    keygen = sub.add_parser("keygen", help="write an Ed25519 private key and print its public key")
    keygen.add_argument("out", help="private key file to create (mode 0600)")
    keygen.set_defaults(func=cmd_keygen)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `push DEVICE --group G FILE` leaves FILE over: argparse does not resume positionals
    # after a flag. Hand such leftovers to push, which reports the misuse itself.
    if extra and args.command == "push" and not any(e.startswith("-") for e in extra):
        args.targets += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code: int = args.func(args)
        return code
    except (SessionError, EdgedError) as exc:
        print(f"edgectl: {exc}", file=sys.stderr)
        return EXIT_USAGE if not isinstance(exc, SessionError) else EXIT_NO_ANSWER
    except FileExistsError as exc:
        print(f"edgectl: {exc.filename}: already exists", file=sys.stderr)
        return EXIT_USAGE
