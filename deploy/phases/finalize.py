"""finalize: let the old colour drain, keep it warm for a fast rollback (the host
stops it later), record the release as good, release the lock."""

from __future__ import annotations

import asyncio

from deploy.context import Context
from deploy.errors import HostError
from deploy.events import Kind
from deploy.ops.colors import retire
from deploy.ops.locks import release_all
from deploy.ops.records import record_history, record_verdict
from deploy.spec import HostSpec
from deploy.state import now

PHASE = "finalize"


async def finalize(ctx: Context) -> None:
    record = ctx.deployment
    if record.switched_at is not None:
        remaining = ctx.env.drain - (now() - record.switched_at).total_seconds()
        if remaining > 0:
            await ctx.emit(Kind.step, f"draining the old colour for {remaining:.1f} s", phase=PHASE)
            await asyncio.sleep(remaining)
    record.finished_at = now()
    record.outcome = "live"
    tidied = await ctx.each_host(lambda host: tidy_host(ctx, host))
    await release_all(ctx, [h for h, ok in zip(ctx.hosts, tidied, strict=True) if ok])


async def tidy_host(ctx: Context, host: HostSpec) -> bool:
    """The release is live and stable; a host that cannot be tidied now does not undo
    that. It keeps its lock (so nobody deploys over an untidy host) and a note says why."""
    try:
        await finalize_host(ctx, host)
    except HostError as exc:
        ctx.deployment.notes.append(
            f"{host.name}: not tidied ({exc.reason}); the old colour may still run and the "
            f"lock is kept: check it, then `greenlight break-lock --env {ctx.env.name} --yes`"
        )
        return False
    return True


async def finalize_host(ctx: Context, host: HostSpec) -> None:
    progress = ctx.progress(host)
    before = progress.live_before
    if before is not None and before.color != progress.target:
        rolled_back = ctx.deployment.kind == "rollback"
        # A release rolled back on demand is not worth keeping warm.
        keep = 0.0 if rolled_back else ctx.env.keep_previous
        await retire(ctx, host, before, keep=keep, phase=PHASE)
        if rolled_back:
            await record_verdict(
                ctx,
                host,
                before.version,
                "bad",
                f"rolled back by {ctx.deployment.who}",
                phase=PHASE,
            )
    await record_verdict(ctx, host, ctx.deployment.version, "good", "", phase=PHASE)
    await record_history(ctx, host, "live", phase=PHASE)
