"""The deploy lock on every host, all or none, and the plan each host's state gives."""

from __future__ import annotations

import json
import os
import socket

from deploy.commands import state as state_commands
from deploy.context import Context
from deploy.errors import HostError, LockHeld, Refused, command_failed
from deploy.events import Kind
from deploy.ops.traffic import reconcile
from deploy.spec import HostSpec
from deploy.state import HostState, parse_host_state

PHASE = "preflight"


def owner_json(ctx: Context) -> str:
    """Who holds the lock, and the process that does: a lock whose process is gone is
    reported as orphaned rather than looking fresh for an hour."""
    return json.dumps(
        {
            "deployment": ctx.deployment.id,
            "owner": ctx.deployment.who,
            "started_at": ctx.deployment.started_at.isoformat(),
            "machine": socket.gethostname(),
            "pid": os.getpid(),
        }
    )


async def lock_all(ctx: Context) -> dict[str, HostState]:
    """Take the lock on every host, or on none: on any refusal, release what we took.

    A host that shows an unfinished switch is reconciled first, under the lock, so
    every plan starts from what the proxy really serves.
    """
    states: dict[str, HostState] = {}
    held: list[str] = []

    async def take(host: HostSpec) -> None:
        cmd = state_commands.acquire_lock(ctx.layout, ctx.deployment.token, owner_json(ctx))
        result = await ctx.run(host, cmd, phase=PHASE, check=False, quiet=True)
        if result.exit_status == state_commands.LOCK_HELD_EXIT:
            state = parse_host_state(host.name, result.output)
            lock = state.lock.describe(ctx.env.name) if state.lock else "held by an unknown owner"
            held.append(f"{host.name}: deploy lock {lock}")
            return
        if result.exit_status != 0:
            raise command_failed(host.name, cmd, result)
        progress = ctx.progress(host)
        progress.locked = True
        state = parse_host_state(host.name, result.output)
        progress.epoch = state.epoch
        if state.switch is not None:
            state = await reconcile(ctx, host, state, phase=PHASE)
        if not progress.planned:  # a retried job keeps the plan it made the first time
            plan(ctx, host, state)
        states[host.name] = state

    try:
        await ctx.each_host(take)
    except (HostError, Refused) as exc:
        await release_all(ctx)
        raise Refused(str(exc)) from None
    if held:
        await release_all(ctx)
        raise LockHeld("; ".join(held))
    for name, state in states.items():
        for problem in state.problems:
            await ctx.emit(Kind.warning, problem, phase=PHASE, host=name)
    return states


def plan(ctx: Context, host: HostSpec, state: HostState) -> None:
    progress = ctx.progress(host)
    progress.live_before = state.live_record
    progress.upstream_before = state.upstream
    progress.target = progress.target or state.idle_color()
    idle = state.colors.get(progress.target)
    keep = idle is not None and idle.status in ("running", "stopped")
    progress.idle_before = idle if keep and idle and not state.is_bad(idle.version) else None
    progress.planned = True


async def release_all(ctx: Context, hosts: list[HostSpec] | None = None) -> None:
    """Release the locks this deployment holds; unreachable hosts keep theirs (noted)."""

    async def release(host: HostSpec) -> None:
        progress = ctx.progress(host)
        if not progress.locked:
            return
        try:
            await ctx.run(
                host,
                state_commands.release_lock(ctx.layout, ctx.deployment.token),
                phase="release",
                quiet=True,
            )
            progress.locked = False
        except HostError as exc:
            ctx.deployment.notes.append(
                f"{host.name}: lock not released ({exc.reason}); "
                f"release it with `greenlight break-lock --env {ctx.env.name} --yes`"
            )

    await ctx.each_host(release, hosts)
