"""The one place commands run: over SSH (asyncssh) or, for `address: local`, here.

Both executors take a `Command`, render it to one quoted shell line, stream its merged
stdout/stderr line by line to a callback, keep a tail of it for failure reports, and
raise `CommandFailed` on a non-zero exit. SSH connections are opened once per host
and reused; host keys are always checked against the spec's known_hosts file.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import asyncssh

from deploy.commands import KILL_AFTER, Command, display, render
from deploy.spec import HostSpec, SSHSpec

LineCallback = Callable[[str], Awaitable[None]]
TAIL_LINES = 40
# Terminal control sequences (colours, erase-line) that tools print even without a tty.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_LINE = 2000
# OpenSSH allows 10 sessions per connection (MaxSessions); stay under it.
CHANNELS_PER_CONNECTION = 8


@dataclass
class Result:
    exit_status: int
    tail: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(self.tail)


class HostError(Exception):
    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.reason = message


class HostUnreachable(HostError):
    """The host cannot be reached (or stopped answering) over SSH."""


class HostKeyRejected(HostUnreachable):
    """The host's key is not in known_hosts, or does not match it."""


class CommandFailed(HostError):
    def __init__(self, host: str, cmd: Command, result: Result) -> None:
        status = result.exit_status
        what = f"timed out after {cmd.timeout:g} s" if status in (124, 137) else f"exit {status}"
        super().__init__(host, f"{cmd.step} failed ({what})")
        self.cmd = cmd
        self.result = result

    @property
    def command_text(self) -> str:
        return display(self.cmd)


class Executor(Protocol):
    name: str

    async def run(
        self, cmd: Command, *, on_line: LineCallback | None = None, check: bool = True
    ) -> Result: ...

    def tunnel(self, address: str, port: int) -> contextlib.AbstractAsyncContextManager[int]:
        """Yields a local port on 127.0.0.1 that reaches address:port as seen by the host."""
        ...

    async def close(self) -> None: ...


class _Output:
    def __init__(self, on_line: LineCallback | None) -> None:
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.on_line = on_line

    async def feed(self, raw: str) -> None:
        line = _ANSI.sub("", raw).rstrip()[:MAX_LINE]
        if not line:
            return
        self.tail.append(line)
        if self.on_line is not None:
            await self.on_line(line)


class SSHExecutor:
    def __init__(self, host: HostSpec, ssh: SSHSpec) -> None:
        self.host = host
        self.ssh = ssh
        self.name = host.name
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()
        self._channels = asyncio.Semaphore(CHANNELS_PER_CONNECTION)

    async def connect(self) -> asyncssh.SSHClientConnection:
        async with self._connecting:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            self._conn = await self._open()
            return self._conn

    async def _open(self) -> asyncssh.SSHClientConnection:
        where = f"{self.host.user}@{self.host.address}:{self.host.port}"
        if not self.ssh.known_hosts.is_file():
            raise HostKeyRejected(self.name, f"known_hosts file {self.ssh.known_hosts} not found")
        if not self.ssh.key.is_file():
            raise HostUnreachable(self.name, f"SSH key file {self.ssh.key} not found")
        try:
            return await asyncssh.connect(
                self.host.address,
                self.host.port,
                username=self.host.user,
                known_hosts=str(self.ssh.known_hosts),
                client_keys=[str(self.ssh.key)],
                agent_path=None,
                config=None,
                password=None,
                kbdint_auth=False,
                connect_timeout=self.ssh.connect_timeout,
                keepalive_interval=self.ssh.keepalive,
                keepalive_count_max=3,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise HostKeyRejected(
                self.name, f"host key of {where} is not trusted by {self.ssh.known_hosts}"
            ) from None
        except asyncssh.PermissionDenied:
            raise HostUnreachable(self.name, f"{where} refused our SSH key") from None
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            raise HostUnreachable(self.name, f"cannot connect to {where}: {_reason(exc)}") from None

    async def run(
        self, cmd: Command, *, on_line: LineCallback | None = None, check: bool = True
    ) -> Result:
        started = time.monotonic()
        output = _Output(on_line)
        async with self._channels:
            process = await self._start(cmd)
            try:
                async with asyncio.timeout(cmd.timeout + KILL_AFTER + 10):
                    if cmd.stdin is not None:
                        process.stdin.write(cmd.stdin)
                    process.stdin.write_eof()
                    async for raw in process.stdout:
                        await output.feed(raw)
                    completed = await process.wait()
            except (asyncssh.Error, OSError, TimeoutError) as exc:
                process.close()
                raise HostUnreachable(
                    self.name, f"connection lost during {cmd.step}: {_reason(exc)}"
                ) from None
        status = completed.exit_status
        if status is None:  # killed by a signal on the host
            status = 128 + 9
        result = Result(status, list(output.tail), time.monotonic() - started)
        if check and status != 0:
            raise CommandFailed(self.name, cmd, result)
        return result

    async def _start(self, cmd: Command) -> asyncssh.SSHClientProcess[str]:
        line = render(cmd)
        for attempt in (1, 2):
            conn = await self.connect()
            try:
                return await conn.create_process(line, stderr=asyncssh.STDOUT, encoding="utf-8")
            except (asyncssh.Error, OSError) as exc:
                # A dropped connection is noticed here: reconnect once, then give up.
                self._conn = None
                if attempt == 2:
                    raise HostUnreachable(
                        self.name, f"cannot start {cmd.step}: {_reason(exc)}"
                    ) from None
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def tunnel(self, address: str, port: int) -> AsyncIterator[int]:
        conn = await self.connect()
        try:
            listener = await conn.forward_local_port("127.0.0.1", 0, address, port)
        except (asyncssh.Error, OSError) as exc:
            raise HostUnreachable(self.name, f"cannot forward to {address}:{port}: {exc}") from None
        try:
            yield listener.get_port()
        finally:
            listener.close()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await self._conn.wait_closed()
            self._conn = None


class LocalExecutor:
    """Runs commands on this machine through `sh -c`, exactly as sshd would."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    async def run(
        self, cmd: Command, *, on_line: LineCallback | None = None, check: bool = True
    ) -> Result:
        started = time.monotonic()
        output = _Output(on_line)
        process = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            render(cmd),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdin is not None and process.stdout is not None
        if cmd.stdin is not None:
            process.stdin.write(cmd.stdin.encode())
        process.stdin.close()
        async for raw in process.stdout:
            await output.feed(raw.decode(errors="replace"))
        status = await process.wait()
        if status < 0:
            status = 128 - status
        result = Result(status, list(output.tail), time.monotonic() - started)
        if check and status != 0:
            raise CommandFailed(self.name, cmd, result)
        return result

    @contextlib.asynccontextmanager
    async def tunnel(self, address: str, port: int) -> AsyncIterator[int]:
        if address not in ("127.0.0.1", "localhost"):
            raise HostUnreachable(self.name, f"local tunnels reach 127.0.0.1 only, not {address}")
        yield port

    async def close(self) -> None:
        return None


def executor_for(host: HostSpec, ssh: SSHSpec) -> Executor:
    if host.address == "local":
        return LocalExecutor(host.name)
    return SSHExecutor(host, ssh)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
