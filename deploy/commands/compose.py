"""docker compose commands for one colour (a `Slot`), run in the app directory."""

from __future__ import annotations

import json

from deploy.commands import Command, command
from deploy.commands.layout import Slot
from deploy.spec import HookSpec


def _compose(slot: Slot, *args: str, step: str, timeout: float) -> Command:
    return command(
        "docker",
        "compose",
        "--ansi",
        "never",
        *args,
        step=step,
        timeout=timeout,
        cwd=slot.layout.app_dir,
        env=slot.env(),
    )


def up(slot: Slot, wait_timeout: float) -> Command:
    """Create or start the colour and wait until its healthchecks pass."""
    seconds = str(max(1, round(wait_timeout)))
    return _compose(
        slot,
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        seconds,
        "--pull",
        "never",
        "--no-build",
        "--remove-orphans",
        step=f"start {slot.color} ({slot.version})",
        timeout=wait_timeout + 30,
    )


def start(slot: Slot, timeout: float) -> Command:
    """Start (or create) the colour without waiting: the caller probes its health itself,
    faster than compose's healthcheck interval allows."""
    return _compose(
        slot,
        "up",
        "--detach",
        "--pull",
        "never",
        "--no-build",
        step=f"start {slot.color} ({slot.version})",
        timeout=timeout,
    )


def stop(slot: Slot, timeout: float = 60) -> Command:
    """Stop, not remove: a stopped colour can be started again in seconds."""
    return _compose(slot, "stop", step=f"stop {slot.color} ({slot.version})", timeout=timeout)


def down(slot: Slot, timeout: float = 60) -> Command:
    """Remove the colour's containers; named volumes and bind-mounted data stay."""
    return _compose(
        slot,
        "down",
        "--remove-orphans",
        step=f"tear down {slot.color} ({slot.version})",
        timeout=timeout,
    )


def status(slot: Slot) -> Command:
    return _compose(slot, "ps", "--all", "--format", "json", step="container state", timeout=30)


def logs(slot: Slot, lines: int = 50) -> Command:
    return _compose(
        slot,
        "logs",
        "--no-color",
        "--timestamps",
        "--tail",
        str(lines),
        step=f"{slot.color} container logs",
        timeout=30,
    )


def hook(slot: Slot, name: str, spec: HookSpec, extra_env: dict[str, str] | None = None) -> Command:
    """A user hook: its argv as given, with the colour's compose project in the environment."""
    return command(
        *spec.command,
        step=f"{name} hook",
        timeout=spec.timeout,
        cwd=slot.layout.app_dir,
        env=slot.env() | (extra_env or {}),
    )


def parse_status(lines: list[str]) -> list[dict[str, object]]:
    """`ps --format json` prints one object per line (or, in older releases, one array)."""
    states: list[dict[str, object]] = []
    for line in lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        items = parsed if isinstance(parsed, list) else [parsed]
        states += [item for item in items if isinstance(item, dict)]
    return states
