"""The ``edged`` command line.

Exit codes: 0 success; 2 usage or configuration error; 1 any other runtime failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from typing import Any, Callable, Dict, List, Optional

from edged import __version__
from edged.errors import ConfigError, EdgedError

__all__ = ["main", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

log = logging.getLogger("edged")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _invalid_config(path: str, exc: ConfigError) -> int:
    print(f"{path}: invalid configuration", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_USAGE


def cmd_version(args: argparse.Namespace) -> int:
    print(f"edged {__version__}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from edged.config import file_warnings, load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        return _invalid_config(args.file, exc)
    from edged.formats.rules import installed_problems, installed_tensorrt

    problems = installed_problems(config.models, installed_tensorrt())
    if problems:
        print(f"{args.file}: cannot run with the TensorRT installed here", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    for warning in file_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    derived = f" from {config.device.id_source}" if config.device.id_source != "config" else ""
    print(f"{args.file}: ok ({len(config.models)} models, device {config.device.id}{derived})")
    return EXIT_OK


def host_info(root: str = "/") -> Dict[str, Any]:
    """This host, or the device tree under ``root`` (then nothing of this host's is asked:
    no library versions, no GPUs, no NVML)."""
    from edged.backends import available_backends
    from edged.platform import discover
    from edged.telemetry.readers import power_spec

    here = root == "/"
    found = discover(root) if here else discover(root, versions=dict, gpu_probe=list)
    spec = power_spec(root, nvml=here)
    info: Dict[str, Any] = {"platform": found.as_dict()}
    info["power"] = {
        "source": spec.source or None,
        "rails": [rail.label for rail in spec.rails],
        "total": spec.total_rail or ("sum of rails" if spec.rails else None),
        "reason": spec.reason or None,
    }
    if here:
        info["cpus"] = cpu_facts()
        info.update(
            {
                "edged": __version__,
                "python": platform.python_version(),
                "system": f"{platform.system()} {platform.release()}",
                "backends": available_backends(),
            }
        )
    return info


def cpu_facts() -> Dict[str, Any]:
    """The CPUs this process may use, and what limits them: the mask (taskset, systemd's
    CPUAffinity=, a cpuset), a CPU quota, and whether it may pin threads (a seccomp filter
    may refuse). CPU engines lay their threads out from these (docs/preprocessing.md)."""
    from edged.cpu_limits import cpu_quota, pinning_allowed

    return {
        "usable": ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0))),
        "online": os.cpu_count(),
        "quota": cpu_quota(),
        "pinning": pinning_allowed(),
    }


def _cpu_line(cpus: Dict[str, Any]) -> str:
    quota = "none" if cpus["quota"] is None else f"{cpus['quota']:g} CPUs"
    pinning = "allowed" if cpus["pinning"] else "refused (threads run unpinned)"
    usable = len(cpus["usable"].split(","))
    return f"cpus: {cpus['usable']} ({usable} of {cpus['online']}); CPU quota: {quota}; thread pinning: {pinning}"


def cmd_info(args: argparse.Namespace) -> int:
    info = host_info(args.root)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False))
        return EXIT_OK
    for key, value in info.items():
        if key == "platform":
            for field, detail in value.items():
                if isinstance(detail, (list, tuple)) and detail and not isinstance(detail[0], dict):
                    detail = " ".join(str(d) for d in detail)
                if detail not in (None, "", [], (), {}):
                    print(f"{field}: {detail}")
        elif key == "power":
            rails = ", ".join(value["rails"]) or f"none ({value['reason']})"
            print(f"power rails: {rails}" + (f"; total: {value['total']}" if value["total"] else ""))
        elif key == "cpus":
            print(_cpu_line(value))
        elif key == "backends":
            for backend in value:
                detail = backend.get("version") or backend.get("reason")
                state = "available" if backend["available"] == "yes" else "unavailable"
                print(f"backend {backend['name']}: {state} ({detail})")
        else:
            print(f"{key}: {value}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from edged.control.boot import load_effective
    from edged.daemon import Daemon

    try:
        # The local file, layered with the last accepted push (docs/config-push.md).
        effective = load_effective(args.config)
    except ConfigError as exc:
        return _invalid_config(args.config, exc)
    if os.environ.get("JOURNAL_STREAM"):
        # Started by systemd: structured records to journald when systemd-python is there.
        from edged.systemd import setup_logging

        setup_logging(logging.getLogger().level, journal=True)
    daemon = Daemon(effective.config, config_path=args.config, source=effective.source, digest=effective.digest)
    daemon.install_signal_handlers()
    return daemon.run(duration_s=args.duration)


def cmd_placement_explain(args: argparse.Namespace) -> int:
    from edged.errors import PlacementError
    from edged.placement.explain import ModelPolicy, explain, render_text
    from edged.placement.service import local_target
    from edged.placement.target import resolve_target, with_tensorrt

    try:
        target = resolve_target(args.platform) if args.platform else local_target()
        if args.tensorrt:
            target = with_tensorrt(target, args.tensorrt)
    except PlacementError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EXIT_USAGE
    names: Dict[str, str] = {}
    for path in args.models:
        base = os.path.splitext(os.path.basename(path))[0] or "model"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names[name] = path
    policies = [
        ModelPolicy(
            name=name,
            path=path,
            precision=args.precision,
            batch=args.batch,
            gpu_fallback=not args.no_gpu_fallback,
            max_dla_subgraphs=args.max_dla_subgraphs,
            target_fps=args.target_fps,
            latency_budget_ms=args.latency_budget_ms,
        )
        for name, path in names.items()
    ]
    try:
        report = explain(policies, target)
    except PlacementError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_text(report, names))
    return EXIT_OK


def _add_placement(sub: Any) -> None:
    placement = sub.add_parser("placement", help="DLA/GPU placement of models")
    psub = placement.add_subparsers(dest="placement_command", metavar="ACTION")
    psub.required = True
    exp = psub.add_parser("explain", help="per-layer DLA/GPU analysis and the chosen placement, with reasons")
    exp.add_argument("models", nargs="+", metavar="MODEL.onnx")
    exp.add_argument(
        "--platform",
        metavar="PRESET|DIR",
        help="a preset (agx-orin-64gb-jp5, orin-nx-8gb-jp6.0, agx-thor-jp7, ...) or a device's root tree "
        "(default: this host)",
    )
    exp.add_argument(
        "--tensorrt", metavar="VERSION", help="analyse with this TensorRT version (e.g. 8.6) instead of the platform's"
    )
    exp.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16", help="default: %(default)s")
    exp.add_argument("--batch", type=int, default=1, help="build batch size (default: %(default)s)")
    exp.add_argument("--target-fps", type=float, default=None, help="frames per second each model must sustain")
    exp.add_argument("--latency-budget-ms", type=float, default=None, help="longest acceptable latency per model")
    exp.add_argument("--max-dla-subgraphs", type=int, default=4, help="fragmentation limit (default: %(default)s)")
    exp.add_argument("--no-gpu-fallback", action="store_true", help="a model must run on the DLA whole or not at all")
    exp.add_argument("--json", action="store_true", help="machine-readable output")
    exp.set_defaults(func=cmd_placement_explain)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edged",
        description="Managed edge-inference daemon for NVIDIA Jetson, dGPU hosts and CPUs.",
        epilog="Exit codes: 0 ok, 2 usage or configuration error, 1 runtime failure.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument(
        "--config",
        default=os.environ.get("EDGED_CONFIG", "/etc/edged/edged.yaml"),
        help="config file (default: %(default)s)",
    )
    run.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this many seconds")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a config file; exit 2 listing every problem")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    info = sub.add_parser("info", help="platform and available backends")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument(
        "--root", default="/", metavar="DIR", help="read a device's files under DIR instead of this host's"
    )
    info.set_defaults(func=cmd_info)

    from edged.plans.commands import add_plan_parser

    add_plan_parser(sub, os.environ.get("EDGED_CONFIG", "/etc/edged/edged.yaml"))
    _add_placement(sub)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"edged: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EdgedError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EXIT_FAILURE
