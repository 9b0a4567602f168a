"""Writing a deployment's outcome into each host's state: verdicts and history."""

from __future__ import annotations

from deploy.commands import state as state_commands
from deploy.context import Context
from deploy.spec import HostSpec
from deploy.state import HistoryEntry, Verdict, VerdictRecord, now


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
        who=record.who,
        result=result,
        from_version=before.version if before else None,
        started_at=record.started_at,
        finished_at=record.finished_at or now(),
        phases=dict(record.phases),
        failure=record.failure.message if record.failure else None,
    )
    await ctx.run(
        host,
        state_commands.append_history(ctx.layout, record.id, entry.model_dump_json()),
        phase=phase,
        quiet=True,
    )
