"""preflight: every host reachable with a verified key, docker and compose present,
enough disk and memory, and the deploy lock taken on every host (all or none)."""

from __future__ import annotations

import json
import socket

from deploy.commands import host as host_commands
from deploy.commands import state as state_commands
from deploy.context import Context, Refused
from deploy.events import Kind
from deploy.executor import CommandFailed, HostError
from deploy.spec import HostSpec
from deploy.state import HostState, parse_host_state

PHASE = "preflight"


async def preflight(ctx: Context) -> None:
    try:
        await ctx.each_host(lambda host: check_host(ctx, host))
    except HostError as exc:
        raise Refused(str(exc)) from None
    await take_locks(ctx)


async def take_locks(ctx: Context) -> None:
    """The lock on every host (all or none), refusing a release that is already live.

    A rollback's whole preflight: it goes back to what the hosts ran a moment ago, so
    it skips the resource checks and saves their round trip.
    """
    await lock_all(ctx)
    if all(
        (p.live_before is not None and p.live_before.digest == ctx.deployment.digest)
        for p in ctx.deployment.hosts.values()
    ):
        await release_all(ctx)
        raise Refused(f"{ctx.deployment.version} ({ctx.deployment.digest[:19]}) is already live")


async def check_host(ctx: Context, host: HostSpec) -> None:
    result = await ctx.run(host, host_commands.facts(ctx.env.app_dir), phase=PHASE, quiet=True)
    facts = host_commands.parse_facts(result.tail)
    problems = []
    if not facts.get("docker", "").split(".")[0].isdigit():
        problems.append(f"docker engine not usable ({facts.get('docker') or 'no answer'})")
    if not facts.get("compose", "").split(".")[0].lstrip("v").isdigit():
        problems.append(f"docker compose v2 not found ({facts.get('compose') or 'no answer'})")
    disk_mb = _int(facts.get("disk_kb")) // 1024
    mem_mb = _int(facts.get("mem_kb")) // 1024
    limits = ctx.env.thresholds
    if disk_mb < limits.min_disk_mb:
        problems.append(f"only {disk_mb} MB free disk, {limits.min_disk_mb} MB required")
    if mem_mb < limits.min_memory_mb:
        problems.append(f"only {mem_mb} MB available memory, {limits.min_memory_mb} MB required")
    if problems:
        raise Refused(f"{host.name}: " + "; ".join(problems))
    await ctx.emit(
        Kind.step,
        f"docker {facts['docker']}, compose {facts['compose']}, {disk_mb} MB disk, "
        f"{mem_mb} MB memory free",
        phase=PHASE,
        host=host.name,
        disk_mb=disk_mb,
        memory_mb=mem_mb,
    )


def owner_json(ctx: Context) -> str:
    return json.dumps(
        {
            "deployment": ctx.deployment.id,
            "owner": ctx.deployment.who,
            "started_at": ctx.deployment.started_at.isoformat(),
            "machine": socket.gethostname(),
        }
    )


async def lock_all(ctx: Context) -> dict[str, HostState]:
    """Take the lock on every host, or on none: on any refusal, release what we took."""
    states: dict[str, HostState] = {}
    held: list[str] = []

    async def take(host: HostSpec) -> None:
        cmd = state_commands.acquire_lock(ctx.layout, ctx.deployment.token, owner_json(ctx))
        result = await ctx.run(host, cmd, phase=PHASE, check=False, quiet=True)
        state = parse_host_state(host.name, result.tail)
        if result.exit_status == state_commands.LOCK_HELD_EXIT:
            lock = state.lock.describe() if state.lock else "held by an unknown owner"
            held.append(f"{host.name}: deploy lock {lock}")
            return
        if result.exit_status != 0:
            raise CommandFailed(host.name, cmd, result)
        progress = ctx.progress(host)
        if progress.epoch is None:  # first time: plan from what the host runs now
            plan(ctx, host, state)
        progress.locked = True
        progress.epoch = state.epoch
        states[host.name] = state

    try:
        await ctx.each_host(take)
    except HostError as exc:
        await release_all(ctx)
        raise Refused(str(exc)) from None
    if held:
        await release_all(ctx)
        raise Refused("; ".join(held))
    for name, state in states.items():
        for problem in state.problems:
            await ctx.emit(Kind.warning, problem, phase=PHASE, host=name)
    return states


def plan(ctx: Context, host: HostSpec, state: HostState) -> None:
    progress = ctx.progress(host)
    progress.live_before = state.live_record
    progress.upstream_before = state.upstream
    progress.target = progress.target or state.idle_color()


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
                f"release it with `greenlight unlock --env {ctx.env.name}`"
            )

    await ctx.each_host(release, hosts)


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0
