"""Command builders: pure functions that return `Command` values, never run anything.

A `Command` is an argv plus how to run it (directory, environment, stdin, timeout).
`render` turns it into the single shell line an SSH server executes: every word is
quoted with `shlex.quote`, variables are passed as quoted `env NAME=value` words
(sshd's AcceptEnv is not relied on), and the command is wrapped in coreutils
`timeout` so it cannot outlive its budget when the client goes away.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KILL_AFTER = 5
# What a data command (state read, lock, facts) may print before its answer is refused.
# The host keeps these answers small and constant (bad versions by name, the last few
# history lines); hundreds of versions and thousands of history lines stay far below
# it, and an answer above it is a broken host, never silently cut.
DATA_LIMIT = 1 << 20


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    step: str
    timeout: float = 60.0
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    # Bytes of output kept whole for parsing; 0 keeps only the report tail.
    data_limit: int = 0
    # Safe to run again after the connection dropped under it (a read, a pull): the
    # executor reconnects and repeats it. Anything that changes state in a way a
    # second run could double-apply leaves this off and fails at the first drop.
    idempotent: bool = False

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a command needs at least one word")
        for name in self.env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
        for word in (*self.argv, *self.env.values(), self.cwd or ""):
            if "\x00" in word:
                raise ValueError("command words cannot contain NUL")


@dataclass
class Result:
    """What a command returned: its exit status, the tail of its merged output (for
    reports), and for data commands the whole output (for parsing)."""

    exit_status: int
    tail: list[str] = field(default_factory=list)
    duration: float = 0.0
    output: str = ""

    @property
    def text(self) -> str:
        return "\n".join(self.tail)

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()


def command(
    *argv: str,
    step: str,
    timeout: float = 60.0,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    data_limit: int = 0,
    idempotent: bool = False,
) -> Command:
    return Command(tuple(argv), step, timeout, cwd, dict(env or {}), stdin, data_limit, idempotent)


def sh(script: str, *args: str, step: str, name: str = "greenlight", **kw: object) -> Command:
    """A fixed POSIX sh script; dynamic values only ever arrive as positional args."""
    return command("sh", "-c", script, name, *args, step=step, **kw)  # type: ignore[arg-type]


def data(script: str, *args: str, step: str, **kw: object) -> Command:
    """A script whose output is an answer to parse: kept whole, up to DATA_LIMIT."""
    return sh(script, *args, step=step, data_limit=DATA_LIMIT, **kw)  # type: ignore[arg-type]


def render(cmd: Command) -> str:
    words = ["timeout", "-k", str(KILL_AFTER), f"{cmd.timeout:g}"]
    if cmd.env:
        words += ["env", *(f"{k}={v}" for k, v in cmd.env.items())]
    line = shlex.join([*words, *cmd.argv])
    if cmd.cwd:
        return f"cd {shlex.quote(cmd.cwd)} && exec {line}"
    return f"exec {line}"


def display(cmd: Command) -> str:
    """A short human form for reports: the argv only, quoted, without the wrapper."""
    if cmd.argv[0] == "sh" and cmd.argv[1] == "-c":
        return f"sh -c <{cmd.step} script> {shlex.join(cmd.argv[4:])}".rstrip()
    return shlex.join(cmd.argv)
