#!/usr/bin/env python3
"""Fleet benchmark: N simulated devices (tools/fleet_sim) on one mosquitto.

    PYTHONPATH=. python tools/bench_fleet.py --devices 1000 --processes 8 --duration 300

Measures, with edged's real MQTT link, control plane, presence answers and telemetry
publisher on every device:
- ``edgectl devices`` wall time (the whole command, interpreter start included);
- a group push acknowledged by all (``edgectl push --group fleet --expect N``): the
  summary and p50/p99 time to result;
- telemetry at 1/period_s from every device at QoS 1, received by consumers sharing one
  MQTT 5 shared subscription (``$share/bench/edged/+/telemetry``): every sequence number
  each device sent must arrive (loss = sent but never received);
- retained bytes per device, broker memory and CPU, device-side memory per device.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path[:0] = [str(REPO), str(TOOLS)]

from fleet_sim.run import Fleet, build_parser, rss_kb  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_mosquitto(workdir: Path) -> "tuple[subprocess.Popen[bytes], int]":
    port = free_port()
    conf = workdir / "mosquitto.conf"
    # Consumers of a whole fleet's QoS 1 telemetry need a deeper queue than the default
    # 1000 messages, or a burst is dropped at the broker (docs/fleet.md).
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "max_queued_messages 100000\nmax_inflight_messages 100\n"
        f"log_dest file {workdir}/mosquitto.log\nlog_type error\nlog_type warning\n"
    )
    proc = subprocess.Popen([os.environ.get("MOSQUITTO", "mosquitto"), "-c", str(conf)], preexec_fn=_raise_nofile)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- consumer mode: one member of the shared subscription ---------------------------------


def consume(port: int, out: str) -> int:
    from edged.ctl.session import BrokerOptions, Received, Session

    seqs: Dict[str, List[int]] = {}
    lock = threading.Lock()

    def on_message(msg: Received) -> None:
        device = msg.topic.split("/")[1]
        seq = json.loads(msg.payload).get("seq")
        with lock:
            seqs.setdefault(device, []).append(int(seq))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    session = Session(BrokerOptions(host="127.0.0.1", port=port, protocol="5"), "", on_message)
    session.connect()
    session.subscribe("$share/bench/edged/+/telemetry", qos=1)
    time.sleep(0.3)
    print("ready", flush=True)
    stop.wait()
    session.close()
    with lock:
        Path(out).write_text(json.dumps(seqs))
    return 0


# -- the benchmark --------------------------------------------------------------------------


def edgectl(port: int, *args: str, timeout: float = 120) -> "tuple[subprocess.CompletedProcess[str], float]":
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "edged.ctl", "--host", "127.0.0.1", "--port", str(port), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return done, time.monotonic() - start


def retained_bytes(port: int, devices: int) -> Dict[str, float]:
    from edged.ctl.session import BrokerOptions, Session

    session = Session(BrokerOptions(host="127.0.0.1", port=port), "")
    session.connect()
    for topic in ("edged/+/status", "edged/+/config/state"):
        session.subscribe(topic)
    time.sleep(2.0)
    session.close()
    sizes: Dict[str, int] = {}
    while not session.messages.empty():
        msg = session.messages.get()
        if msg.retained:
            kind = msg.topic.split("/", 2)[2]
            sizes[kind] = sizes.get(kind, 0) + len(msg.topic) + len(msg.payload)
    return {kind: round(total / devices, 1) for kind, total in sizes.items()}


def loss(reports: Dict[str, Any], received: Dict[str, List[int]]) -> Dict[str, int]:
    sent = lost = duplicates = 0
    for device, report in reports.items():
        last = int(report["telemetry_seq"] or 0)
        got: List[int] = received.get(device, [])
        unique: Set[int] = set(got)
        sent += last
        lost += len(set(range(1, last + 1)) - unique)
        duplicates += len(got) - len(unique)
    return {"sent": sent, "lost": lost, "duplicates": duplicates}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    broker, port = start_mosquitto(work)
    consumers: List["subprocess.Popen[str]"] = []
    fleet: Optional[Fleet] = None
    try:
        for k in range(args.consumers):
            command = [sys.executable, __file__, "--consume", str(port), str(work / f"consumer{k}.json")]
            consumers.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
        for proc in consumers:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        sim_argv = ["--port", str(port), "--devices", str(args.devices), "--processes", str(args.processes)]
        sim_argv += ["--qos", "1", "--period-s", str(args.period_s), "--apply-s", str(args.apply_s), "--groups", "a,b"]
        sim_args = build_parser().parse_args(sim_argv)
        fleet = Fleet(sim_args)
        started = time.monotonic()
        fleet.start()
        connected = fleet.wait_ready()
        ready_s = time.monotonic() - started
        cpu0, t0 = cpu_seconds(broker.pid), time.monotonic()
        time.sleep(2.0)
        listings = []
        for _ in range(3):
            done, wall = edgectl(port, "devices")
            # The table (edged/ctl/render.py): a header, a row per device, a count by state.
            listings.append((wall, len(done.stdout.splitlines()) - 2, done.returncode))
        filtered, filtered_s = edgectl(port, "devices", "--group", "a", "--state", "online")
        push_file = work / "push.json"
        push_file.write_text(json.dumps({"patch": {"telemetry": {"period_s": args.period_s}}}))
        push, push_s = edgectl(
            port, "--timeout", "60", "push", "--group", "fleet", str(push_file), "--version", "2", "--quiet",
            "--expect", str(args.devices),
        )  # fmt: skip
        retained = retained_bytes(port, args.devices)
        remaining = args.duration - (time.monotonic() - t0)
        if remaining > 0:
            time.sleep(remaining)
        window_s = time.monotonic() - t0
        broker_cpu = cpu_seconds(broker.pid) - cpu0
        broker_rss = rss_kb(broker.pid)
        sim = fleet.stop()
        fleet = None
        time.sleep(3.0)  # the final telemetry of each device, still in flight
        for proc in consumers:
            proc.send_signal(signal.SIGTERM)
        received: Dict[str, List[int]] = {}
        for k, proc in enumerate(consumers):
            proc.wait(30)
            part = json.loads((work / f"consumer{k}.json").read_text())
            for device, seqs in part.items():
                received.setdefault(device, []).extend(seqs)
        shares = [len(json.loads((work / f"consumer{k}.json").read_text())) for k in range(len(consumers))]
        return {
            "devices": args.devices,
            "processes": args.processes,
            "connected": connected,
            "all_connected_s": round(ready_s, 1),
            "devices_listing_s": [round(w, 2) for w, _, _ in listings],
            "devices_listed": [n for _, n, _ in listings],
            "devices_filtered_s": round(filtered_s, 2),
            "devices_filtered_rows": len(filtered.stdout.splitlines()) - 2,
            "push_rc": push.returncode,
            "push_summary": push.stdout.strip().splitlines()[-1:] + push.stderr.strip().splitlines()[-1:],
            "push_wall_s": round(push_s, 2),
            "telemetry": dict(loss(sim["devices"], received), window_s=round(window_s, 1)),
            "consumer_device_shares": shares,
            "retained_bytes_per_device": retained,
            "broker_rss_kb_per_device": round(broker_rss / args.devices, 1),
            "broker_cpu_percent_per_1000_devices": round(100.0 * broker_cpu / window_s * 1000 / args.devices, 1),
            "sim_rss_kb_per_device": sim["rss_kb_per_device"],
            "sim_cpu_ms_per_device_per_s": sim["cpu_ms_per_device_per_s"],
            "sim_rss_kb_per_process_baseline": sim["rss_kb_per_process_baseline"],
            "applied": sum(int(d["applied"]) for d in sim["devices"].values()),
            "dropped_offline": sum(int(d["dropped_offline"]) for d in sim["devices"].values()),
        }
    finally:
        if fleet is not None:
            fleet.stop()
        for proc in consumers:
            if proc.poll() is None:
                proc.kill()
        broker.terminate()
        broker.wait(10)


def bench_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--consumers", type=int, default=2, help="members of the shared telemetry subscription")
    parser.add_argument("--duration", type=float, default=60.0, help="telemetry window (s)")
    parser.add_argument("--period-s", type=float, default=1.0)
    parser.add_argument("--apply-s", type=float, default=0.05)
    parser.add_argument("--consume", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = bench_parser().parse_args(argv)
    if args.consume:
        return consume(int(args.consume[0]), args.consume[1])
    report = run(args)
    print(json.dumps(report, indent=2, sort_keys=True))
    median = statistics.median(report["devices_listing_s"])
    print(f"edgectl devices: median {median:.2f}s for {report['devices_listed'][0]} devices", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
