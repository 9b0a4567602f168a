"""smoke: the spec's smoke requests against the idle colour's own port: expected
status codes, no 5xx, a latency bound, and the colour's own version on every answer."""

from __future__ import annotations

from deploy import probes
from deploy.context import Context
from deploy.events import Kind
from deploy.ops.colors import seen_from_host
from deploy.spec import HostSpec

PHASE = "smoke"


async def smoke(ctx: Context) -> None:
    await ctx.each_host(lambda host: smoke_host(ctx, host))


async def smoke_host(ctx: Context, host: HostSpec) -> None:
    if not ctx.env.smoke:
        await ctx.emit(Kind.step, "no smoke requests configured", phase=PHASE, host=host.name)
        return
    slot = ctx.target_slot(host)
    async with ctx.executors[host.name].tunnel(host.app_address, slot.port) as port:
        answers = await probes.smoke(
            f"http://127.0.0.1:{port}",
            ctx.env.smoke,
            ctx.env.version_header,
            shown=seen_from_host(host, slot),
            expect_version=slot.version,
        )
    slowest = max(a.latency for a in answers)
    await ctx.emit(
        Kind.step,
        f"{len(answers)} smoke requests passed (slowest {slowest * 1000:.0f} ms)",
        phase=PHASE,
        host=host.name,
        facts={"requests": len(answers), "slowest_ms": round(slowest * 1000, 1)},
    )
