"""switch: point each host's proxy at the new colour (fenced, marked, tested and
reloaded in one round trip), then confirm through the proxy that the new version
answers new visitors before the mark is cleared."""

from __future__ import annotations

from deploy.context import Context
from deploy.errors import StepFailed
from deploy.ops.traffic import confirm, finish_switch, point_proxy, upstream_for
from deploy.spec import HostSpec
from deploy.state import now

PHASE = "switch"


async def switch(ctx: Context) -> None:
    unverified = [p.name for p in ctx.deployment.hosts.values() if not p.verified]
    if unverified:
        raise StepFailed(unverified[0], PHASE, "not every host is verified; refusing to switch")
    await ctx.each_host(lambda host: switch_host(ctx, host))
    unconfirmed = [h for h in ctx.hosts if h.proxy_url is None]
    if unconfirmed:
        await confirm(ctx, None, ctx.deployment.version, phase=PHASE)
        await ctx.each_host(lambda host: finish_switch(ctx, host, phase=PHASE), unconfirmed)
    ctx.deployment.switched_at = now()


async def switch_host(ctx: Context, host: HostSpec) -> None:
    progress = ctx.progress(host)
    slot = ctx.target_slot(host)
    progress.switched = True
    await point_proxy(ctx, host, upstream_for(ctx, slot), slot.color, slot.version, phase=PHASE)
    if host.proxy_url:
        await confirm(ctx, host, slot.version, phase=PHASE)
        await finish_switch(ctx, host, phase=PHASE)
