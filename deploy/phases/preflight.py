"""preflight: every host reachable with a verified key, docker and compose present,
enough disk and memory, the deploy lock taken on every host (all or none), and each
host's proxy seen serving what the host records as live."""

from __future__ import annotations

from deploy.commands import host as host_commands
from deploy.context import Context
from deploy.errors import HostError, Refused
from deploy.events import Kind
from deploy.ops.locks import lock_all, release_all
from deploy.ops.traffic import check_proxy_agrees
from deploy.spec import HostSpec
from deploy.state import HostState, parse_facts

PHASE = "preflight"


async def preflight(ctx: Context) -> None:
    try:
        await ctx.each_host(lambda host: check_host(ctx, host))
    except HostError as exc:
        raise Refused(str(exc)) from None
    states = await take_locks(ctx)
    try:
        await ctx.each_host(lambda host: check_live(ctx, host, states[host.name]))
    except (HostError, Refused) as exc:
        await release_all(ctx)
        raise Refused(str(exc)) from None


async def take_locks(ctx: Context) -> dict[str, HostState]:
    """The lock on every host (all or none), refusing a release that is already live.

    A rollback's whole preflight: it goes back to what the hosts ran a moment ago, so
    it skips the resource checks and saves their round trip.
    """
    states = await lock_all(ctx)
    record = ctx.deployment
    if all(
        p.live_before is not None
        and (p.live_before.digest, p.live_before.images) == (record.digest, record.images)
        for p in record.hosts.values()
    ):
        await release_all(ctx)
        raise Refused(f"{ctx.deployment.version} ({ctx.deployment.digest[:19]}) is already live")
    return states


async def check_live(ctx: Context, host: HostSpec, state: HostState) -> None:
    """Never stage onto the colour that serves traffic: the proxy must agree with the
    record, and the new colour's port must not be the live colour's."""
    await check_proxy_agrees(ctx, host, state)
    live = state.live_record
    target = ctx.progress(host).target
    if live is not None and target is not None and ctx.env.ports.of(target) == live.port:
        raise Refused(
            f"{host.name}: {target}'s port {live.port} is the port {live.color} serves "
            f"{live.version} on; fix `ports` in the spec"
        )


async def check_host(ctx: Context, host: HostSpec) -> None:
    result = await ctx.run(host, host_commands.facts(ctx.env.app_dir), phase=PHASE, quiet=True)
    facts = parse_facts(result.lines)
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
        facts={"disk_mb": disk_mb, "memory_mb": mem_mb},
    )


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0
