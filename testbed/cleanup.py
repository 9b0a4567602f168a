"""Leftovers: mounts under the test bed's directories and processes that outlived a daemon."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .util import cmdline, kill, log, pid_alive, run, wait_for


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape")


def mounts_under(*roots: Path) -> list[str]:
    prefixes = [os.fspath(r).rstrip("/") for r in roots]
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        point = _unescape(line.split()[4])
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return found


def unmount_under(*roots: Path) -> int:
    """Unmount everything mounted at or below roots, deepest first. Returns how many."""
    count = 0
    for _ in range(3):
        points = sorted(set(mounts_under(*roots)), key=lambda p: p.count("/"), reverse=True)
        if not points:
            break
        for point in points:
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "-l", point], check=False)
            count += 1
    return count


# Only daemons of the kinds the test bed starts are ever treated as leftovers.
DAEMONS = {
    "dockerd",
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v1",
    "containerd-shim-runc-v2",
    "runc",
    "docker-init",
    "sshd",
    "nginx",
    "redis-server",
    "docker-registry",
}


def stray_processes(*markers: str) -> list[int]:
    """Test bed daemons (not this process) whose command line mentions any marker."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            continue
        args = " ".join(cmdline(pid))
        if exe in DAEMONS and any(m in args for m in markers) and pid_alive(pid):
            found.append(pid)
    return found


def kill_strays(*markers: str) -> int:
    pids = stray_processes(*markers)
    for pid in pids:
        kill(pid, signal.SIGTERM)
    if pids and not wait_for(lambda: not any(pid_alive(p) for p in pids), 5):
        for pid in pids:
            kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(p) for p in pids), 5)
    if pids:
        log(f"stopped {len(pids)} leftover process(es)")
    return len(pids)


def listeners(address: str, port: int) -> list[int]:
    """Processes holding a listening TCP socket on address:port (IPv4)."""
    want = f"{_hex_addr(address)}:{port:04X}"
    inodes = set()
    try:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":  # 0A = LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    except OSError:
        return []
    if not inodes:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return found


def _hex_addr(address: str) -> str:
    return "".join(f"{int(part):02X}" for part in reversed(address.split(".")))


def kill_listeners(address: str, port: int, exe: str) -> int:
    """Kill leftover processes of program exe (e.g. nginx workers whose master died) that
    still hold address:port."""
    pids = []
    for pid in listeners(address, port):
        try:
            if os.path.basename(os.readlink(f"/proc/{pid}/exe")) == exe:
                pids.append(pid)
        except OSError:
            continue
    for pid in pids:
        kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(p) for p in pids), 5)
    return len(pids)


def cgroup_pids(parent: str) -> list[int]:
    """Processes in any cgroup under `parent` (containers started with --cgroup-parent)."""
    found: set[int] = set()
    base = Path("/sys/fs/cgroup")
    candidates = [base / parent] + ([p / parent for p in base.iterdir()] if base.is_dir() else [])
    for top in candidates:
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            try:
                found.update(int(x) for x in procs.read_text().split())
            except (OSError, ValueError):
                continue
    return sorted(found)


def kill_cgroup(parent: str) -> int:
    pids = [p for p in cgroup_pids(parent) if p != os.getpid()]
    for pid in pids:
        kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(p) for p in pids), 5)
    return len(pids)


def clean_engine(exec_root: Path, data_root: Path, cgroup_parent: str | None) -> None:
    """What a dockerd that died without shutting down leaves behind: its containerd and
    shims, container processes, mounts, and stale pid files in the exec root."""
    kill_strays(os.fspath(exec_root) + "/")
    if cgroup_parent:
        kill_cgroup(cgroup_parent)
    unmount_under(exec_root, data_root)
    import shutil

    shutil.rmtree(exec_root, ignore_errors=True)
