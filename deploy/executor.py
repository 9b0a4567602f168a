"""The one place commands run: over SSH (asyncssh) or, for `address: local`, here.

Both executors take a `Command`, render it to one quoted shell line, stream its merged
stdout/stderr line by line to a callback, keep a tail of it for failure reports, and
raise `CommandFailed` on a non-zero exit. SSH connections are opened once per host
and reused; host keys are always checked against the spec's known_hosts file.

A command that is safe to run again (`Command.idempotent`) survives a dropped
connection: it is reconnected and repeated with a growing pause in between
(`retry_delay`). Any other command fails at the first drop, and the engine's fail-safe
path (tear down, roll back) takes over.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import asyncssh

from deploy.commands import KILL_AFTER, Command, Result, render
from deploy.errors import (
    CommandFailed,
    ConnectionDropped,
    HostError,
    HostKeyRejected,
    HostUnreachable,
    OutputTooLarge,
    command_failed,
)
from deploy.spec import HostSpec, SSHSpec

LineCallback = Callable[[str], Awaitable[None]]
TAIL_LINES = 40
# Terminal control sequences (colours, erase-line) that tools print even without a tty.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_LINE = 2000
# OpenSSH allows 10 sessions per connection (MaxSessions); stay under it.
CHANNELS_PER_CONNECTION = 8
CHUNK = 1 << 16
# AES-GCM is one AEAD call per packet in `cryptography`; asyncssh's first choice,
# chacha20-poly1305, builds two cipher objects per packet (3x the CPU in a 10-host
# deploy). Both are what OpenSSH offers by default; the rest stay as fallbacks.
CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
]
# A command safe to repeat is tried this many times in all, waiting 0.5, 1, 2 and 4 s
# between attempts (7.5 s): long enough for sshd to restart or a blip to pass, short
# enough that a host that is really gone fails its phase promptly.
ATTEMPTS = 5
FIRST_BACKOFF = 0.5

__all__ = [
    "CommandFailed",
    "Executor",
    "HostError",
    "HostKeyRejected",
    "HostUnreachable",
    "LocalExecutor",
    "Result",
    "SSHExecutor",
    "executor_for",
]


class Executor(Protocol):
    name: str

    async def run(
        self,
        cmd: Command,
        *,
        on_line: LineCallback | None = None,
        check: bool = True,
        on_retry: LineCallback | None = None,
    ) -> Result:
        """Run `cmd`; `on_line` gets its output, `on_retry` a notice before each repeat."""
        ...

    def tunnel(self, address: str, port: int) -> contextlib.AbstractAsyncContextManager[int]:
        """Yields a local port on 127.0.0.1 that reaches address:port as seen by the host."""
        ...

    async def close(self) -> None: ...


class _Output:
    """The merged output of one command: a tail for reports, streamed lines for
    progress, and for data commands the whole text, up to the command's limit."""

    def __init__(self, cmd: Command, on_line: LineCallback | None) -> None:
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.on_line = on_line
        self.limit = cmd.data_limit
        self.kept: list[str] = []
        self.size = 0
        self.overflow = False

    async def feed(self, raw: str) -> None:
        if self.limit:
            self.size += len(raw.encode())
            if self.size > self.limit:
                self.overflow = True
            elif not self.overflow:
                self.kept.append(raw if raw.endswith("\n") else raw + "\n")
        line = _ANSI.sub("", raw).rstrip()[:MAX_LINE]
        if not line:
            return
        self.tail.append(line)
        if self.on_line is not None:
            await self.on_line(line)

    def result(self, host: str, cmd: Command, status: int, started: float, check: bool) -> Result:
        result = Result(status, list(self.tail), time.monotonic() - started, "".join(self.kept))
        if self.overflow:
            raise OutputTooLarge(host, cmd, result)
        if check and status != 0:
            raise command_failed(host, cmd, result)
        return result


async def _pump(read: Callable[[int], Awaitable[str]], output: _Output) -> None:
    """Feed output line by line, reading in chunks: a single line of any length (a
    minified log record, a progress bar without newlines) must not break the reader."""
    pending = ""
    while True:
        chunk = await read(CHUNK)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split("\n")
        for line in lines:
            await output.feed(line + "\n")
        if len(pending) > CHUNK:  # no newline for a long while: pass it on as it is
            await output.feed(pending)
            pending = ""
    if pending:
        await output.feed(pending)


def retry_delay(cmd: Command, error: HostError, attempt: int) -> float | None:
    """Seconds to wait before running `cmd` again after `error` ended its attempt number
    `attempt` (from 1), or None when it must not run again.

    Only a lost or refused connection is worth another attempt, and only for a command
    safe to repeat: a rejected host key or SSH key, the command's own failure or its own
    timeout, and a host that stopped answering for the command's whole budget are final.
    """
    if not cmd.idempotent or not isinstance(error, ConnectionDropped) or attempt >= ATTEMPTS:
        return None
    return FIRST_BACKOFF * 2.0 ** (attempt - 1)


def connect_failure(name: str, where: str, known_hosts: str, exc: BaseException) -> HostUnreachable:
    """What a failed `asyncssh.connect` means: a key the other side rejects is final;
    a refused, reset or timed-out connection may be gone in a moment."""
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyRejected(name, f"host key of {where} is not trusted by {known_hosts}")
    if isinstance(exc, asyncssh.PermissionDenied):
        return HostUnreachable(name, f"{where} refused our SSH key")
    return ConnectionDropped(name, f"cannot connect to {where}: {_reason(exc)}")


class SSHExecutor:
    def __init__(self, host: HostSpec, ssh: SSHSpec) -> None:
        self.host = host
        self.ssh = ssh
        self.name = host.name
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()
        self._channels = asyncio.Semaphore(CHANNELS_PER_CONNECTION)
        # Retries are for a connection that drops: a host this deployment never reached
        # is reported at once (`status`, preflight), not after the whole backoff.
        self.reached = False

    async def connect(self) -> asyncssh.SSHClientConnection:
        async with self._connecting:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            self._conn = await self._open()
            self.reached = True
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
                encryption_algs=CIPHERS,
                keepalive_interval=self.ssh.keepalive,
                keepalive_count_max=3,
            )
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            raise connect_failure(self.name, where, str(self.ssh.known_hosts), exc) from None

    async def run(
        self,
        cmd: Command,
        *,
        on_line: LineCallback | None = None,
        check: bool = True,
        on_retry: LineCallback | None = None,
    ) -> Result:
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return await self._attempt(cmd, on_line, check)
            except ConnectionDropped as exc:
                delay = retry_delay(cmd, exc, attempt) if self.reached else None
                if delay is None:
                    if attempt == 1:
                        raise
                    raise HostUnreachable(
                        self.name,
                        f"{exc.reason} (gave up after {attempt} attempts "
                        f"in {time.monotonic() - started:.1f} s)",
                    ) from None
                if on_retry is not None:
                    await on_retry(
                        f"{exc.reason}; {cmd.step} is safe to repeat: attempt "
                        f"{attempt + 1} of {ATTEMPTS} in {delay:g} s"
                    )
                await asyncio.sleep(delay)
                attempt += 1

    async def _attempt(self, cmd: Command, on_line: LineCallback | None, check: bool) -> Result:
        """One run of `cmd` on one connection; a new output each time, so the answer
        of an attempt cut short never mixes with the next one's."""
        started = time.monotonic()
        output = _Output(cmd, on_line)
        async with self._channels:
            conn, process = await self._start(cmd)
            try:
                async with asyncio.timeout(cmd.timeout + KILL_AFTER + 10):
                    if cmd.stdin is not None:
                        process.stdin.write(cmd.stdin)
                    process.stdin.write_eof()
                    await _pump(process.stdout.read, output)
                    completed = await process.wait()
            except TimeoutError:
                # The host's own `timeout` should have ended it long ago: the host
                # stopped answering, which is not the command's fault.
                process.close()
                raise HostUnreachable(
                    self.name,
                    f"no answer during {cmd.step} for {cmd.timeout + KILL_AFTER + 10:g} s "
                    "(the command's own limit is enforced on the host)",
                ) from None
            except (asyncssh.Error, OSError) as exc:
                process.close()
                self._discard(conn)
                raise ConnectionDropped(
                    self.name, f"connection lost during {cmd.step}: {_reason(exc)}"
                ) from None
        status = completed.exit_status
        if status is None:  # killed by a signal on the host
            status = 128 + 9
        return output.result(self.name, cmd, status, started, check)

    async def _start(
        self, cmd: Command
    ) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientProcess[str]]:
        line = render(cmd)
        for attempt in (1, 2):
            conn = await self.connect()
            try:
                process = await conn.create_process(line, stderr=asyncssh.STDOUT, encoding="utf-8")
                return conn, process
            except (asyncssh.Error, OSError) as exc:
                # A kept connection that died since its last use is noticed here; the
                # command never started, so any command may reconnect once.
                self._discard(conn)
                if attempt == 2:
                    raise ConnectionDropped(
                        self.name, f"cannot start {cmd.step}: {_reason(exc)}"
                    ) from None
        raise AssertionError("unreachable")

    def _discard(self, conn: asyncssh.SSHClientConnection) -> None:
        """Stop using a connection that failed a command (closing it, should it only look
        alive); one another command has opened since stays."""
        if self._conn is conn:
            self._conn = None
        conn.close()

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
        self,
        cmd: Command,
        *,
        on_line: LineCallback | None = None,
        check: bool = True,
        on_retry: LineCallback | None = None,  # no connection here to lose
    ) -> Result:
        started = time.monotonic()
        output = _Output(cmd, on_line)
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
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stdout = process.stdout

        async def read(size: int) -> str:
            chunk = await stdout.read(size)
            return decoder.decode(chunk, final=not chunk)

        await _pump(read, output)
        status = await process.wait()
        if status < 0:
            status = 128 - status
        return output.result(self.name, cmd, status, started, check)

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
