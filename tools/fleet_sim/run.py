"""Run N simulated devices in a few processes against one broker.

    python -m fleet_sim.run --port 1883 --devices 1000 --processes 8 --period-s 1 --qos 1

Each worker process runs its share of the devices (device.py) and, when told to stop
(SIGTERM, SIGINT or the end of --duration), stops them, which publishes their clean
``offline`` status and final telemetry, then writes its report. The parent prints
"ready N" once every device is connected and, at the end, one JSON report: devices
connected, messages published, per-device telemetry sequence numbers, pushes applied,
and memory (RSS) per process and per device.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

TOOLS = Path(__file__).resolve().parents[1]
REPO = TOOLS.parent


def rss_kb(pid: Optional[int] = None) -> int:
    """Resident memory of ``pid`` (default this process), from /proc/<pid>/status."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def groups_of(index: int, groups: Sequence[str]) -> List[str]:
    """Every device is in ``fleet``; ``groups`` are dealt out round-robin."""
    return ["fleet"] + ([groups[index % len(groups)]] if groups else [])


def _mqtt_section(args: argparse.Namespace) -> Dict[str, Any]:
    section: Dict[str, Any] = {"host": args.host, "port": args.port, "protocol": args.protocol, "backoff_max_s": 5}
    if args.username:
        section.update(username=args.username, password_file=args.password_file)
    return section


def worker(args: argparse.Namespace) -> int:
    from fleet_sim.device import SimDevice

    logging.basicConfig(level=logging.WARNING, format=f"worker {args.first}: %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    workdir = Path(args.workdir)
    fail = {int(i) for i in args.fail.split(",") if i}
    groups = [g for g in args.groups.split(",") if g]
    base_rss = rss_kb()
    begun = time.monotonic()
    devices = [
        SimDevice(
            i,
            _mqtt_section(args),
            workdir,
            groups_of(i, groups),
            args.period_s,
            args.qos,
            args.apply_s,
            i in fail,
        )
        for i in range(args.first, args.first + args.count)
    ]
    for device in devices:
        device.start()
        stop.wait(args.stagger_s)  # a thousand CONNECTs at once only measure the storm
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline and not all(d.connected for d in devices):
        stop.wait(0.1)
    print(f"ready {sum(d.connected for d in devices)}", flush=True)
    started_rss = rss_kb()
    stop.wait(args.duration if args.duration > 0 else None)
    peak_rss = rss_kb()
    connected = {d.id: d.connected for d in devices}
    for device in devices:
        device.stop()
    report = {
        "first": args.first,
        "devices": {d.id: dict(d.report(), connected=connected[d.id]) for d in devices},
        "rss_kb": {"before_devices": base_rss, "connected": started_rss, "at_stop": peak_rss},
        "threads": threading.active_count(),
        "cpu_s": time.process_time(),
        "wall_s": time.monotonic() - begun,
    }
    Path(args.report).write_text(json.dumps(report))
    return 0


class Fleet:
    """The parent side: start the workers, wait for them, gather their reports."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = tempfile.TemporaryDirectory(prefix="fleet-sim-")
        self.workers: List["subprocess.Popen[str]"] = []
        self.reports: List[Path] = []

    def start(self) -> None:
        args = self.args
        per = -(-args.devices // args.processes)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TOOLS), os.environ.get("PYTHONPATH", "")]))
        for first in range(0, args.devices, per):
            report = Path(self.tmp.name) / f"report-{first}.json"
            command = [sys.executable, "-m", "fleet_sim.run", "--worker", "--first", str(first)]
            command += ["--count", str(min(per, args.devices - first)), "--report", str(report)]
            command += ["--workdir", str(Path(self.tmp.name) / f"w{first}")]
            command += _passed_on(args)
            self.workers.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env))
            self.reports.append(report)

    def wait_ready(self) -> int:
        connected = 0
        for proc in self.workers:
            line = proc.stdout.readline() if proc.stdout else ""
            connected += int(line.split()[1]) if line.startswith("ready ") else 0
        return connected

    def stop(self, timeout_s: float = 60.0) -> Dict[str, Any]:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            proc.wait(timeout_s)
        devices: Dict[str, Any] = {}
        rss = []
        cpu_s = wall_s = 0.0
        for path in self.reports:
            report = json.loads(path.read_text())
            devices.update(report["devices"])
            rss.append(report["rss_kb"])
            cpu_s += report["cpu_s"]
            wall_s = max(wall_s, report["wall_s"])
        self.tmp.cleanup()
        total = sum(r["connected"] for r in rss)
        base = sum(r["before_devices"] for r in rss)
        return {
            "devices": devices,
            "connected": sum(1 for d in devices.values() if d["connected"]),
            "rss_kb_total": total,
            "rss_kb_per_device": round((total - base) / max(1, len(devices)), 1),
            "rss_kb_per_process_baseline": round(base / max(1, len(rss)), 1),
            "cpu_ms_per_device_per_s": round(1000.0 * cpu_s / max(1e-9, wall_s) / max(1, len(devices)), 2),
        }


_PASSED = ("host", "port", "protocol", "username", "password_file", "groups", "fail", "period_s", "qos", "apply_s")
_PASSED += ("stagger_s",)


def _passed_on(args: argparse.Namespace) -> List[str]:
    out = ["--duration", str(args.duration)]
    for name in _PASSED:
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--protocol", default="auto", choices=["auto", "5", "3.1.1"])
    parser.add_argument("--username")
    parser.add_argument("--password-file")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--groups", default="", help="comma-separated groups dealt out round-robin (all: fleet)")
    parser.add_argument("--fail", default="", help="comma-separated device indices whose applies fail")
    parser.add_argument("--period-s", type=float, default=1.0, help="telemetry period")
    parser.add_argument("--qos", type=int, default=0, choices=[0, 1], help="telemetry QoS")
    parser.add_argument("--apply-s", type=float, default=0.05, help="time a simulated apply takes")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until SIGTERM)")
    parser.add_argument("--stagger-s", type=float, default=0.01, help="pause between device starts in a process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker(args)
    fleet = Fleet(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fleet.start()
    print(f"ready {fleet.wait_ready()}", flush=True)
    stop.wait(args.duration if args.duration > 0 else None)
    report = fleet.stop()
    report.pop("devices")
    print(json.dumps(report, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
