"""Writing what a deployment learned into each host's state: colours, verdicts, history."""

from __future__ import annotations

from datetime import datetime

from deploy.commands import state as state_commands
from deploy.commands.layout import Slot
from deploy.context import Context
from deploy.spec import HostSpec
from deploy.state import ColorRecord, ColorStatus, HistoryEntry, Verdict, VerdictRecord, now


async def record_color(
    ctx: Context,
    host: HostSpec,
    slot: Slot,
    status: ColorStatus,
    *,
    phase: str,
    warm_until: datetime | None = None,
) -> None:
    record = ColorRecord(
        color=slot.color,
        version=slot.version,
        digest=slot.image.rsplit("@", 1)[-1],
        image=slot.image,
        port=slot.port,
        deployment=slot.deployment,
        status=status,
        warm_until=warm_until,
        images=dict(slot.images),
    )
    await ctx.run(
        host,
        state_commands.write_color(ctx.layout, slot.color, record.model_dump_json()),
        phase=phase,
        quiet=True,
    )


async def record_verdict(
    ctx: Context, host: HostSpec, version: str, verdict: Verdict, reason: str, *, phase: str
) -> None:
    record = VerdictRecord(
        version=version, verdict=verdict, reason=reason, deployment=ctx.deployment.id
    )
    await ctx.run(
        host,
        state_commands.write_verdict(ctx.layout, version, record.model_dump_json()),
        phase=phase,
        quiet=True,
    )


async def record_history(ctx: Context, host: HostSpec, result: str, *, phase: str) -> None:
    record = ctx.deployment
    before = ctx.progress(host).live_before
    entry = HistoryEntry(
        deployment=record.id,
        kind=record.kind,
        version=record.version,
        digest=record.digest,
        image=record.image,
        images=record.images,
        who=record.who,
        result=result,
        from_version=before.version if before else None,
        started_at=record.started_at,
        finished_at=record.finished_at or now(),
        phases=dict(record.phases),
        failure=record.failure.message if record.failure else None,
        skipped_tests=record.skip_tests,
    )
    await ctx.run(
        host,
        state_commands.append_history(ctx.layout, record.id, entry.model_dump_json()),
        phase=phase,
        quiet=True,
    )
