"""verify: check the idle colour directly, through an SSH tunnel to its own port on
the host, never through the proxy; then the dependency checks."""

from __future__ import annotations

from deploy.commands import compose
from deploy.context import Context
from deploy.events import Kind
from deploy.ops.colors import check_health
from deploy.spec import HostSpec

PHASE = "verify"


async def verify(ctx: Context) -> None:
    await ctx.each_host(lambda host: verify_host(ctx, host))


async def verify_host(ctx: Context, host: HostSpec) -> None:
    slot = ctx.target_slot(host)
    await check_health(ctx, host, slot, phase=PHASE)
    for check in ctx.env.dependencies:
        await ctx.check_cancelled()
        await ctx.run(host, compose.hook(slot, f"{check.name} check", check), phase=PHASE)
        await ctx.emit(Kind.step, f"{check.name} check passed", phase=PHASE, host=host.name)
    ctx.progress(host).verified = True
