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


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    step: str
    timeout: float = 60.0
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a command needs at least one word")
        for name in self.env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
        for word in (*self.argv, *self.env.values(), self.cwd or ""):
            if "\x00" in word:
                raise ValueError("command words cannot contain NUL")


def command(
    *argv: str,
    step: str,
    timeout: float = 60.0,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> Command:
    return Command(tuple(argv), step, timeout, cwd, dict(env or {}), stdin)


def sh(script: str, *args: str, step: str, name: str = "greenlight", **kw: object) -> Command:
    """A fixed POSIX sh script; dynamic values only ever arrive as positional args."""
    return command("sh", "-c", script, name, *args, step=step, **kw)  # type: ignore[arg-type]


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
