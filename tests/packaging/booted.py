"""Real systemd as PID 1 of a Debian 12 tree, in its own PID, mount and cgroup namespaces.

The tree is an overlay over the cached debootstrap tree (tests/packaging/make-rootfs), so
every boot starts clean and the cache is never written. Every mount (overlay, proc, sys,
cgroup2, /run, /dev) is made inside the new mount namespace: when PID 1 is killed the
namespace and all its mounts go with it, whatever state the test failed in. A cgroup of
its own (a child of the test's cgroup, entered before the cgroup namespace is created)
keeps this systemd away from the host's and from other boots running at the same time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[2]
ROOTFS_CACHE = REPO / "var" / "cache" / "debootstrap" / "bookworm"
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

_BOOT = r"""
set -e
w=$1
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$2,upperdir=$w/upper,workdir=$w/work" "$w/root"
r=$w/root
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup"
mount -t tmpfs -o mode=0755 tmpfs "$r/run"
mount --rbind /dev "$r/dev"
exec chroot "$r" /lib/systemd/systemd --log-level=info --unit=multi-user.target
"""


def cgroup2_own_dir() -> Path:
    """This process's folder in the cgroup2 hierarchy (pure v2 or the hybrid 'unified' mount)."""
    mount: Optional[str] = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype == "cgroup2":
                mount = fields[4]
                break
    if mount is None:
        raise RuntimeError("no cgroup2 hierarchy mounted on this host")
    with open("/proc/self/cgroup") as f:
        own = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    return Path(mount + own)


class BootedTree:
    def __init__(self, rootfs: Path = ROOTFS_CACHE) -> None:
        self.rootfs = rootfs
        scratch = REPO / "var" / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="boot-", dir=scratch))
        for name in ("upper", "work", "root"):
            (self.work / name).mkdir()
        self.cgroup = cgroup2_own_dir() / f"edged-e2e-{os.getpid()}-{self.work.name}"
        self.proc: "Optional[subprocess.Popen[bytes]]" = None
        self.pid1: Optional[int] = None
        self.console = self.work / "console.log"

    # -- lifecycle ---------------------------------------------------------------------

    def boot(self, timeout: float = 60.0) -> None:
        self.cgroup.mkdir()
        cgroup_procs = str(self.cgroup / "cgroup.procs")

        def enter_cgroup() -> None:
            with open(cgroup_procs, "w") as f:
                f.write(str(os.getpid()))

        env = {"PATH": DEBIAN_PATH, "container": "edged-e2e", "LANG": "C.UTF-8"}
        with open(self.console, "wb") as console:
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "--pid",
                    "--fork",
                    "--mount",
                    "--cgroup",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    _BOOT,
                    "boot",
                    str(self.work),
                    str(self.rootfs),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                preexec_fn=enter_cgroup,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the namespace exited ({self.proc.returncode}):\n{self.console_text()}")
            self.pid1 = self._pid1()
            if self.pid1 is not None:
                state = self.run("systemctl", "is-system-running", check=False, timeout=10).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.3)
        raise RuntimeError(f"systemd did not finish booting in {timeout}s:\n{self.console_text()}")

    def _pid1(self) -> Optional[int]:
        """The host pid of the namespace's PID 1 (unshare's forked child, once it is systemd)."""
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        for child in children:
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return int(child)
            except OSError:
                continue
        return None

    def shutdown(self) -> None:
        """Kill PID 1 by its pid (the namespace, its processes and mounts die with it), then
        remove the cgroups it left and the overlay's scratch folder."""
        if self.pid1 is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._remove_cgroup()
        shutil.rmtree(self.work, ignore_errors=True)

    def _remove_cgroup(self) -> None:
        if not self.cgroup.exists():
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            leftovers = sorted((p for p in self.cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            try:
                for folder in [*leftovers, self.cgroup]:
                    folder.rmdir()
                return
            except OSError:
                time.sleep(0.2)  # processes of the dead namespace are still being reaped

    def console_text(self) -> str:
        return self.console.read_text(errors="replace")[-6000:] if self.console.exists() else ""

    # -- inside ------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The tree as the host sees it (the overlay is mounted only inside the namespace,
        so files are written through /proc/PID1/root)."""
        assert self.pid1 is not None
        return Path(f"/proc/{self.pid1}/root")

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120.0, stdin: Optional[str] = None
    ) -> "subprocess.CompletedProcess[str]":
        """Run a command inside the tree, in all of PID 1's namespaces, as root."""
        assert self.pid1 is not None
        cmd: List[str] = [
            "nsenter",
            "-t",
            str(self.pid1),
            "-a",
            "-r",
            "-w",
            "env",
            "-i",
            f"PATH={DEBIAN_PATH}",
            "LANG=C.UTF-8",
            "DEBIAN_FRONTEND=noninteractive",
            "SYSTEMD_PAGER=",
            *argv,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        self.run("sh", "-c", f'mkdir -p "$(dirname {path})" && cat > {path} && chmod {mode:o} {path}', stdin=text)

    def journal(self, unit: str = "edged") -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False).stdout

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-P", prop, unit).stdout.strip()
