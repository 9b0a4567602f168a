"""monitor: the stability window, through the public URL and every host's proxy."""

from __future__ import annotations

from deploy import probes
from deploy.context import Context
from deploy.events import Kind

PHASE = "monitor"


def monitor_urls(ctx: Context) -> list[str]:
    urls = [ctx.env.public_url, *(ctx.env.proxy_url(h) for h in ctx.hosts)]
    return list(dict.fromkeys(u.rstrip("/") for u in urls))


async def monitor(ctx: Context) -> None:
    window = ctx.env.stability
    if window.duration == 0:
        await ctx.emit(Kind.step, "stability window disabled", phase=PHASE)
        return

    async def report(index: int, figures: probes.Figures) -> None:
        await ctx.emit(
            Kind.metrics,
            f"interval {index}: {figures.requests} requests, {figures.errors} errors, "
            f"p50 {figures.p50_ms:.0f} ms, p95 {figures.p95_ms:.0f} ms",
            phase=PHASE,
            interval=index,
            figures=figures,
        )
        await ctx.check_cancelled()

    total = await probes.stability_window(monitor_urls(ctx), window, ctx.env.version_header, report)
    figures = total.figures()
    await ctx.emit(
        Kind.step,
        f"stable for {window.duration:g} s: {figures.requests} requests, "
        f"{figures.errors} errors, p95 {figures.p95_ms:.0f} ms",
        phase=PHASE,
        facts=figures.model_dump(exclude={"versions"}),
    )
