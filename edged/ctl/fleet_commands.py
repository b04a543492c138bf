"""``edgectl push`` and ``edgectl devices``: one device, a group, or a fleet in waves.

Exit codes as edged/ctl/main.py: 0 every addressed device applied; 1 a device rejected
or rolled back, or a canary wave failed; 3 no answer in time (or devices stayed silent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

from edged.ctl.fleet import select, survey
from edged.ctl.render import color_wanted, devices_screen, fit
from edged.ctl.rollout import GOOD, Progress, Tally, collect, waves
from edged.ctl.session import BrokerOptions, Session
from edged.ctl.views import terminal_width
from edged.errors import EdgedError

__all__ = ["push", "devices", "load_push_file", "describe_result", "open_session"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_ANSWER = 0, 1, 2, 3


def open_session(options: BrokerOptions, timeout_s: float) -> Session:
    session = Session(options, client_id=f"edgectl-{uuid.uuid4().hex[:12]}")
    session.connect(timeout_s)
    if session.note:
        print(f"edgectl: {session.note}", file=sys.stderr)
    return session


def load_push_file(path: str, version: Optional[int]) -> Dict[str, Any]:
    """A push envelope ({version, patch|config}) or a bare config document, from JSON or
    YAML; a bare document becomes a full-config push."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EdgedError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(doc, dict):
        raise EdgedError(f"{path}: expected a mapping")
    if "patch" not in doc and "config" not in doc:
        doc = {"version": doc.get("version"), "config": doc}
    if version is not None:
        doc["version"] = version
    if not isinstance(doc.get("version"), int):
        raise EdgedError(f"{path}: the push needs an integer version (in the file or --version)")
    return doc


def describe_result(result: Dict[str, Any]) -> str:
    device, status = result.get("device", "?"), result.get("status", "?")
    line = f"{device}: {status} version {result.get('version')}"
    changes = result.get("changes")
    if isinstance(changes, dict):
        parts = [f"{k} {', '.join(v)}" for k, v in changes.items() if v and k != "unchanged"]
        line += f" ({'; '.join(parts) or 'no model changes'})"
    for error in result.get("errors") or []:
        line += f"\n  {error}"
    return line


def describe_download(result: Dict[str, Any]) -> str:
    d = result.get("download") or {}
    total, eta = d.get("total_bytes"), d.get("eta_s")
    share = f" {100 * d.get('bytes', 0) / total:.0f}%" if total else ""
    return (
        f"{result.get('device', '?')}: {d.get('state')} {d.get('model')} {d.get('field')}{share} "
        f"({d.get('bytes')} bytes, {d.get('rate_bps', 0) / 1e6:.2f} MB/s, eta {'-' if eta is None else f'{eta:g}s'})"
    )


def _payload(base: Dict[str, Any], request_id: str, target: str, sign: Optional[str]) -> bytes:
    payload = dict(base, id=request_id, target=target)
    if sign:
        from edged.control.canonical import load_private_key, sign_payload

        payload.pop("signature", None)
        payload["signature"] = sign_payload(payload, load_private_key(Path(sign).read_bytes()))
    return json.dumps(payload).encode()


def _printer(quiet: bool) -> Any:
    def show(result: Dict[str, Any]) -> None:
        if result.get("status") == "downloading":
            if not quiet:
                print(describe_download(result), flush=True)
        elif not quiet or result.get("status") not in GOOD:
            print(describe_result(result), flush=True)

    return show


def _send(session: Session, topic: str, body: bytes, reply_topic: str, request_id: str) -> float:
    session.publish(topic, body, qos=1, response_topic=reply_topic, correlation_data=request_id.encode())
    return time.monotonic()


def push(args: argparse.Namespace, options: BrokerOptions) -> int:
    base = load_push_file(args.file, args.version)
    if args.model or args.labels:
        from edged.ctl.upload import attach_files

        attach_files(base, "model", args.model, args.base_url)
        attach_files(base, "labels", args.labels, args.base_url)
    if args.canary and not args.group:
        print("edgectl push: --canary rolls out to a --group", file=sys.stderr)
        return EXIT_USAGE
    session = open_session(options, args.timeout)
    try:
        if args.canary:
            return _rollout(session, args, base)
        request_id = uuid.uuid4().hex
        reply_topic = f"edgectl/{request_id}/result"
        target = args.device or args.group
        topic = f"edged/{args.device}/config/set" if args.device else f"edged/group/{args.group}/config/set"
        tally = Tally(expected=1 if args.device else args.expect)
        session.subscribe(reply_topic)
        # MQTT 3.1.1 brokers drop the response topic: the result also arrives on the
        # device's config/result, matched by the request id.
        session.subscribe(f"edged/{args.device or '+'}/config/result")
        time.sleep(0.1)  # let the SUBACKs land before the device can answer
        sent = _send(session, topic, _payload(base, request_id, target, args.sign), reply_topic, request_id)
        progress = Progress(tally) if args.group else None
        collect(session, request_id, tally, sent, args.timeout, _printer(args.quiet), progress)
    finally:
        session.close()
    if not tally.results:
        print(f"edgectl: no answer on {topic} within {args.timeout:g}s", file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.group:
        print(tally.summary(), flush=True)
    if tally.expected and len(tally.results) < tally.expected:
        print(f"edgectl: {len(tally.results)} of {tally.expected} devices answered", file=sys.stderr)
        return EXIT_NO_ANSWER
    return EXIT_OK if all(r.get("status") in GOOD for r in tally.results.values()) else EXIT_FAILED


def _rollout(session: Session, args: argparse.Namespace, base: Dict[str, Any]) -> int:
    found = survey(session, group=args.group, wait_s=min(args.timeout, 5.0), expect=args.expect)
    members = sorted(v.device for v in found.devices.values() if v.answered)
    if not members:
        print(f"edgectl: no member of group {args.group!r} answered the presence query", file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.expect and len(members) < args.expect:
        print(
            f"edgectl: {len(members)} of {args.expect} members of {args.group!r} answered; not pushing", file=sys.stderr
        )
        return EXIT_NO_ANSWER
    session.subscribe("edged/+/config/result")
    overall = Tally(expected=len(members), names=members)
    show = _printer(args.quiet)
    plan = list(waves(members, args.canary))
    for number, wave in enumerate(plan, 1):
        request_id = uuid.uuid4().hex
        reply_topic = f"edgectl/{request_id}/result"
        session.subscribe(reply_topic)
        time.sleep(0.1)
        tally = Tally(expected=len(wave), names=wave)
        print(f"wave {number}/{len(plan)}: {len(wave)} devices", file=sys.stderr, flush=True)
        sent = time.monotonic()
        for device in wave:
            body = _payload(base, request_id, device, args.sign)
            _send(session, f"edged/{device}/config/set", body, reply_topic, request_id)
        collect(session, request_id, tally, sent, args.timeout, show, Progress(tally))
        for device, result in tally.results.items():
            overall.add(result, tally.seconds[device])
        if not tally.all_good():
            rest = sum(len(w) for w in plan[number:])
            print(overall.summary(), flush=True)
            print(f"edgectl: wave {number} failed; stopped before {rest} more devices", file=sys.stderr)
            return EXIT_FAILED if tally.counts()["applied"] < len(tally.results) else EXIT_NO_ANSWER
    print(overall.summary(), flush=True)
    return EXIT_OK


def devices(args: argparse.Namespace, options: BrokerOptions) -> int:
    session = open_session(options, args.timeout)
    try:
        found = survey(session, group=args.group, wait_s=args.wait, expect=args.expect)
    finally:
        session.close()
    views = select(found.sorted(), args.group, args.state, args.version, args.software)
    if not found.devices:
        print(
            f"edgectl: found no devices: nobody answered the presence query on {found.query_topic} "
            f"within {args.wait:g}s, and the broker delivered no retained status on edged/+/status",
            file=sys.stderr,
        )
        return EXIT_NO_ANSWER
    rows: List[Dict[str, Any]] = [v.row() for v in views]
    if rows:
        print("\n".join(devices_screen(rows, terminal_width(), bool(args.wide), color_wanted(sys.stdout))))
    else:
        print("(no device matches the filters)")
    print(
        fit(
            f"{len(views)} of {len(found.devices)} shown; {found.answers} answered, "
            f"{found.retained} retained status; {found.elapsed_s:.2f}s",
            terminal_width(),
        ),
        file=sys.stderr,
    )
    return EXIT_OK
