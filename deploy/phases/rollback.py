"""rollback: put traffic back on what was live before, within about a second when the
previous colour is still warm, or after starting it when it was stopped."""

from __future__ import annotations

from deploy import probes
from deploy.commands import compose
from deploy.commands.layout import Slot
from deploy.context import Context
from deploy.events import Kind
from deploy.phases.stage import record_color
from deploy.phases.switch import confirm, point_proxy, upstream_for
from deploy.phases.verify import check_health
from deploy.spec import HostSpec

PHASE = "rollback"


async def rollback_switched(ctx: Context) -> None:
    """Return every host this deployment switched; hosts it never switched keep serving."""
    switched = [
        h for h in ctx.hosts if ctx.progress(h).switched and not ctx.progress(h).rolled_back
    ]
    await ctx.each_host(lambda host: return_host(ctx, host), switched)


async def return_host(ctx: Context, host: HostSpec) -> None:
    """Point this host's proxy back at the colour that was live before this deployment."""
    progress = ctx.progress(host)
    before = progress.live_before
    current = upstream_for(ctx, ctx.target_slot(host))
    if before is None:
        # First deployment to this host: put the upstream file back as we found it.
        if progress.upstream_before:
            await point_proxy(ctx, host, progress.upstream_before, current, phase=PHASE)
        progress.rolled_back = True
        return
    slot = ctx.record_slot(host, before)
    await ensure_running(ctx, host, slot, phase=PHASE)
    await point_proxy(ctx, host, upstream_for(ctx, slot), current, phase=PHASE)
    if host.proxy_url:
        await confirm(ctx, host, before.version, phase=PHASE)
    progress.rolled_back = True


async def ensure_running(ctx: Context, host: HostSpec, slot: Slot, *, phase: str) -> None:
    """A warm colour answers its health check at once; a stopped one is started first."""
    quick = ctx.env.health.model_copy(update={"successes": 1, "deadline": 1.0, "interval": 0.2})
    try:
        async with ctx.executors[host.name].tunnel(host.app_address, slot.port) as port:
            await probes.wait_healthy(f"http://127.0.0.1:{port}", quick, ctx.env.version_header)
        return
    except probes.ProbeFailed:
        pass
    await ctx.emit(
        Kind.step,
        f"{slot.color} ({slot.version}) is not running; starting it",
        phase=phase,
        host=host.name,
    )
    await ctx.run(host, compose.start(slot, ctx.env.boot_timeout), phase=phase)
    await check_health(ctx, host, slot, phase=phase, successes=1, interval=0.1)
    await record_color(ctx, host, slot, "running", phase=phase)


async def teardown_host(ctx: Context, host: HostSpec, *, phase: str = PHASE) -> None:
    """Remove the colour this deployment started; its data volume stays."""
    progress = ctx.progress(host)
    if not progress.staged or progress.target is None:
        return
    slot = ctx.target_slot(host)
    await ctx.run(host, compose.down(slot), phase=phase)
    await record_color(ctx, host, slot, "removed", phase=phase)
    progress.staged = False
