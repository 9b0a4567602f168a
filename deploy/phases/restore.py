"""restore: a rollback's stage. The version to go back to is made to run in the idle
colour: started in about a second when that colour still keeps it, or restored from
its image (still on the host) when a failed candidate took its place."""

from __future__ import annotations

from deploy.context import Context
from deploy.events import Kind
from deploy.ops.colors import ensure_running, start_color, verify_digest
from deploy.ops.records import record_color
from deploy.spec import HostSpec

PHASE = "restore"


async def restore(ctx: Context) -> None:
    await ctx.each_host(lambda host: restore_host(ctx, host))


async def restore_host(ctx: Context, host: HostSpec) -> None:
    progress = ctx.progress(host)
    kept = progress.idle_before
    record = ctx.deployment
    if kept is not None and (kept.version, kept.digest, kept.images) == (
        record.version,
        record.digest,
        record.images,
    ):
        await ensure_running(ctx, host, kept, phase=PHASE)
    else:
        slot = ctx.target_slot(host)
        await ctx.emit(
            Kind.step,
            f"{record.version} is no longer kept in {slot.color}; restoring it from its "
            "image (this takes longer than a warm rollback)",
            phase=PHASE,
            host=host.name,
        )
        await start_color(ctx, host, slot, phase=PHASE)
        await verify_digest(ctx, host, slot, phase=PHASE)
        await record_color(ctx, host, slot, "running", phase=PHASE)
    progress.verified = True
