"""docker compose commands for one colour (a `Slot`), run in the app directory."""

from __future__ import annotations

from deploy.commands import DATA_LIMIT, Command, command, sh
from deploy.commands.layout import Slot
from deploy.spec import HookSpec


def _compose(
    slot: Slot,
    *args: str,
    step: str,
    timeout: float,
    data_limit: int = 0,
    idempotent: bool = False,
) -> Command:
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
        data_limit=data_limit,
        idempotent=idempotent,
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


def create(slot: Slot, timeout: float = 120) -> Command:
    """Create the colour's containers without starting them: a stopped colour that a
    rollback starts in about a second."""
    return _compose(
        slot,
        "up",
        "--no-start",
        "--pull",
        "never",
        "--no-build",
        step=f"put {slot.version} back in {slot.color} (stopped)",
        timeout=timeout,
    )


# Stops the colour later, from the host itself (nothing on the controller has to live
# that long), unless by then it serves traffic again, was replaced by another
# deployment, or a deployment holds the lock (it decides for itself).
_STOP_LATER = r"""
seconds=$1; shift
setsid sh -c '
  sleep "$1"; d=$2 up=$3 color=$4 deployment=$5 app=$6; shift 6
  [ -d "$d/lock" ] && exit 0
  grep -q "^# greenlight color=$color " "$up" && exit 0
  grep -qF "\"deployment\":\"$deployment\"" "$d/colors/$color.json" || exit 0
  (cd "$app" && "$@") || exit 1
  sed -i "s/\"status\":\"running\"/\"status\":\"stopped\"/" "$d/colors/$color.json"
' greenlight-stop-later "$seconds" "$@" </dev/null >/dev/null 2>&1 &
"""


def stop_later(slot: Slot, seconds: float) -> Command:
    """Keep the colour warm for `seconds` (a rollback then takes a second), then stop it."""
    stop_now = stop(slot)
    env_words = [f"{k}={v}" for k, v in stop_now.env.items()]
    return sh(
        _STOP_LATER,
        str(max(1, round(seconds))),
        slot.layout.state_dir,
        slot.layout.upstream_file,
        slot.color,
        slot.deployment,
        slot.layout.app_dir,
        "env",
        *env_words,
        *stop_now.argv,
        step=f"keep {slot.color} ({slot.version}) warm for {seconds:g} s",
        timeout=30,
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
    return _compose(
        slot,
        "ps",
        "--all",
        "--format",
        "json",
        step="container state",
        timeout=30,
        data_limit=DATA_LIMIT,
        idempotent=True,
    )


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
        idempotent=True,
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
