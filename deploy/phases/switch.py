"""switch: point each host's proxy at the new colour, atomically and fenced, test the
config, reload gracefully, then confirm through the proxy that the new version answers."""

from __future__ import annotations

from deploy import probes
from deploy.commands import proxy
from deploy.commands.layout import Slot
from deploy.context import Context, StepFailed
from deploy.events import Kind
from deploy.executor import CommandFailed
from deploy.spec import HostSpec
from deploy.state import now

PHASE = "switch"


async def switch(ctx: Context) -> None:
    unverified = [p.name for p in ctx.deployment.hosts.values() if not p.verified]
    if unverified:
        raise StepFailed(unverified[0], PHASE, "not every host is verified; refusing to switch")
    await ctx.each_host(lambda host: switch_host(ctx, host))
    if any(h.proxy_url is None for h in ctx.hosts):
        await confirm(ctx, None, ctx.deployment.version, phase=PHASE)
    ctx.deployment.switched_at = now()


async def switch_host(ctx: Context, host: HostSpec) -> None:
    progress = ctx.progress(host)
    slot = ctx.target_slot(host)
    progress.switched = True
    await point_proxy(ctx, host, upstream_for(ctx, slot), progress.upstream_before, phase=PHASE)
    if host.proxy_url:
        await confirm(ctx, host, slot.version, phase=PHASE)


def upstream_for(ctx: Context, slot: Slot) -> str:
    return proxy.upstream_text(
        ctx.env.proxy.upstream_template,
        color=slot.color,
        address=slot.host.app_address,
        port=slot.port,
        version=slot.version,
        deployment=ctx.deployment.id,
        epoch=ctx.progress(slot.host).epoch or 0,
    )


async def point_proxy(
    ctx: Context, host: HostSpec, content: str, fallback: str, *, phase: str
) -> None:
    """Write the upstream (fenced by our epoch), test the config, reload.

    If the proxy rejects the new config, the previous upstream is written back so the
    file on disk never disagrees with what the proxy serves.
    """
    epoch = ctx.progress(host).epoch or 0
    await ctx.run(host, proxy.write_upstream(ctx.layout, content, epoch), phase=phase, quiet=True)
    try:
        await ctx.run(host, proxy.test_config(ctx.env.proxy), phase=phase, quiet=True)
    except CommandFailed:
        if fallback:
            await ctx.run(
                host, proxy.write_upstream(ctx.layout, fallback, epoch), phase=phase, quiet=True
            )
        raise
    await ctx.run(host, proxy.reload(ctx.env.proxy), phase=phase, quiet=True)


async def confirm(ctx: Context, host: HostSpec | None, version: str, *, phase: str) -> None:
    base = ctx.env.proxy_url(host) if host else ctx.env.public_url
    url = base.rstrip("/") + ctx.env.health.path
    proxy = ctx.env.proxy
    took = await probes.confirm_version(
        url,
        ctx.env.version_header,
        version,
        successes=proxy.confirm_successes,
        settle=proxy.confirm_settle,
        timeout=proxy.confirm_timeout,
    )
    await ctx.emit(
        Kind.step,
        f"{base} answers {version} ({took * 1000:.0f} ms after reload, settled)",
        phase=phase,
        host=host.name if host else None,
        confirm_ms=round(took * 1000, 1),
    )
