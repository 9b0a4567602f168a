"""stage: pull by digest, start the idle colour beside the live one, run the migrate
and static hooks in it, and prove it runs the digest that was resolved."""

from __future__ import annotations

from deploy.commands import compose
from deploy.context import Context
from deploy.ops.colors import start_color, verify_digest
from deploy.ops.records import record_color
from deploy.spec import HostSpec

PHASE = "stage"


async def stage(ctx: Context) -> None:
    await ctx.each_host(lambda host: stage_host(ctx, host))


async def stage_host(ctx: Context, host: HostSpec) -> None:
    slot = ctx.target_slot(host)
    await start_color(ctx, host, slot, phase=PHASE)
    for name in ("migrate", "static"):
        hook = getattr(ctx.env.hooks, name)
        if hook is not None:
            await ctx.check_cancelled()
            await ctx.run(host, compose.hook(slot, name, hook), phase=PHASE)
    await verify_digest(ctx, host, slot, phase=PHASE)
    await record_color(ctx, host, slot, "running", phase=PHASE)
