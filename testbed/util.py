"""Small helpers: progress lines, commands, processes, pid files, sockets and HTTP probes."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import paths


class TestbedError(RuntimeError):
    """A step of the test bed failed; the message says which and why."""


_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def log(message: str) -> None:
    if not _quiet:
        print(f"testbed: {message}", flush=True)


def daemon_env(**extra: str) -> dict[str, str]:
    env = {"PATH": paths.DAEMON_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
    env.update(extra)
    return env


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = 600,
    what: str | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, and raise TestbedError with its tail on failure."""
    argv = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            argv,
            env=env if env is not None else daemon_env(),
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
    except FileNotFoundError as exc:
        raise TestbedError(f"{what or argv[0]}: command not found: {argv[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"{what or ' '.join(argv)}: timed out after {timeout}s") from exc
    if check and proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        raise TestbedError(f"{what or ' '.join(argv)} failed (exit {proc.returncode}): {tail}")
    return proc


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    log_file: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start a long-running process in its own session, output appended to log_file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting\n".encode())
        out.flush()
        return subprocess.Popen(
            [os.fspath(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env if env is not None else daemon_env(),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            **kwargs,
        )


def run_to_log(
    argv: Sequence[str | os.PathLike[str]],
    log_file: Path,
    *,
    what: str,
    timeout: float = 60,
    **kwargs: Any,
) -> None:
    """Run a command that daemonizes (nginx, redis): output to a file, never to a pipe that a
    forked daemon could keep open."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        try:
            proc = subprocess.run(
                [os.fspath(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **({"env": daemon_env()} | kwargs),
            )
        except subprocess.TimeoutExpired as exc:
            raise TestbedError(f"{what}: timed out after {timeout}s") from exc
    if proc.returncode != 0:
        raise TestbedError(f"{what} failed (exit {proc.returncode}):\n{log_tail(log_file)}")


def log_tail(log_file: Path, lines: int = 15) -> str:
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])


# --- processes and pid files -------------------------------------------------------------


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """Is pid a live process, and (if marker is given) does its command line mention marker?"""
    if not pid or pid <= 0 or is_zombie(pid):
        return False
    if marker is None:
        return True
    return any(marker in part for part in cmdline(pid))


def live_pid(pid_file: Path, marker: str | None = None) -> int | None:
    pid = read_pid(pid_file)
    return pid if pid_alive(pid, marker) else None


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children(todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


def kill(pid: int, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def reap() -> None:
    """Collect exited children of this process (daemons we spawned that died early)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def stop_pid(pid: int | None, *, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
    """Signal pid and wait for it to go; SIGKILL after timeout. True if it was running."""
    if not pid_alive(pid):
        return False
    assert pid is not None
    kill(pid, sig)
    if not wait_for(lambda: not pid_alive(pid), timeout, reap_children=True):
        kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), 5, reap_children=True)
    return True


def wait_for(
    predicate: Callable[[], object], timeout: float, interval: float = 0.05, reap_children=False
) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        if reap_children:
            reap()
        time.sleep(interval)


# --- sockets and HTTP -------------------------------------------------------------------


def tcp_banner(host: str, port: int, timeout: float = 1.0) -> bytes | None:
    """Connect and read the first bytes the server sends (an SSH banner), or None."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(64)
    except OSError:
        return None


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_ping(host: str = "127.0.0.1", port: int = paths.REDIS_PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_request(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    timeout: float = 3.0,
) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP request; returns (status, headers with lower-case names, body)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        conn.request(method, parts.path or "/", headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def http_status(url: str, timeout: float = 2.0, **kwargs: Any) -> int | None:
    try:
        return http_request(url, timeout=timeout, **kwargs)[0]
    except (OSError, http.client.HTTPException):
        return None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def docker_api(socket_path: Path, method: str, path: str, timeout: float = 10.0) -> tuple[int, Any]:
    """Call the Docker Engine API on a unix socket; returns (status, decoded JSON or text)."""
    conn = _UnixHTTPConnection(os.fspath(socket_path), timeout)
    try:
        conn.request(method, path, headers={"Host": "docker"})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def docker_ping(socket_path: Path) -> bool:
    try:
        return docker_api(socket_path, "GET", "/_ping", timeout=2.0)[0] == 200
    except OSError:
        return False
    except http.client.HTTPException:
        return False


# --- files -------------------------------------------------------------------------------


def write_if_changed(path: Path, text: str, mode: int | None = None) -> bool:
    """Write text atomically unless the file already holds it. True if it changed."""
    try:
        if path.read_text() == text:
            if mode is not None:
                path.chmod(mode)
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    if mode is not None:
        tmp.chmod(mode)
    os.replace(tmp, path)
    return True


def chown(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


_lock_depth = 0


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One test bed operation at a time (pytest workers may call reset concurrently).

    Re-entrant within a process: `up` calls helpers that take the lock themselves.
    """
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    lock_path = paths.root() / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


def require_root() -> None:
    if os.geteuid() != 0:
        raise TestbedError("the test bed must run as root (it starts daemons and adds users)")


def fail(message: str) -> None:
    print(f"testbed: error: {message}", file=sys.stderr, flush=True)


def keygen(path: str | os.PathLike[str], comment: str) -> None:
    """A new ed25519 key pair without a passphrase (test bed keys only)."""
    run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
        what=f"ssh-keygen {comment}",
    )
