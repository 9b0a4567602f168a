"""rollback: put traffic back on what was live before this deployment, on every host
it switched, within about a second when the previous colour is still warm."""

from __future__ import annotations

from deploy.context import Context
from deploy.errors import StepFailed
from deploy.ops.colors import ensure_running
from deploy.ops.traffic import confirm, finish_switch, point_proxy, upstream_for
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
    if before is None:
        # First deployment to this host: put the upstream file back as we found it. An
        # empty one cannot be put back (the proxy would refuse it): the new colour keeps
        # the traffic, and the failed rollback leaves it and the lock for a human.
        if not progress.upstream_before.strip():
            raise StepFailed(
                host.name,
                "switch back",
                "nothing was live before and the upstream file was empty, so there is "
                "nothing to put back; the new colour keeps the traffic",
            )
        target = ctx.target_slot(host)
        await point_proxy(
            ctx, host, progress.upstream_before, target.color, "nothing live", phase=PHASE
        )
        await finish_switch(ctx, host, phase=PHASE)
        progress.rolled_back = True
        return
    slot = ctx.record_slot(host, before)
    await ensure_running(ctx, host, before, phase=PHASE)
    await point_proxy(ctx, host, upstream_for(ctx, slot), slot.color, slot.version, phase=PHASE)
    if host.proxy_url:
        await confirm(ctx, host, before.version, phase=PHASE)
    await finish_switch(ctx, host, phase=PHASE)
    progress.rolled_back = True
