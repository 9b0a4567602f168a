"""Taking over a deployment whose driver died (a killed worker, a lost machine).

The new driver holds the same host locks (the deployment's token), so it first moves
every host's epoch on: whatever of the old driver is still alive can no longer switch.
Then it looks at what the hosts actually do, reconciling any switch left unfinished,
and brings production to a known good state: it finishes a release whose stability
window had passed, and otherwise puts back what was live before. A dead driver says
nothing about the release, so the version is never recorded as bad.
"""

from __future__ import annotations

from deploy.commands import state as state_commands
from deploy.context import Context
from deploy.deployment import Deployment, FailureReport
from deploy.errors import HostError, PhaseFailed, Refused
from deploy.events import Kind
from deploy.ops.traffic import reconcile
from deploy.phases.finalize import finalize
from deploy.pipeline import finish, phases_of, recover, run_phase
from deploy.spec import HostSpec
from deploy.state import parse_facts, parse_host_state

PHASE = "recovery"


async def take_over(ctx: Context, why: str) -> Deployment:
    record = ctx.deployment
    await ctx.emit(Kind.warning, f"taking over {record.id}: {why}", phase=PHASE)
    await ctx.each_host(lambda host: look(ctx, host), _reachable(ctx))
    if "monitor" in record.completed:
        try:
            await run_phase(ctx, "finalize", finalize)
        except (PhaseFailed, Refused) as exc:
            record.notes.append(f"finalize after the takeover failed: {exc}")
    else:
        phase = next((p for p, _ in phases_of(record) if p not in record.completed), "finalize")
        report = FailureReport(phase=phase, message=f"its driver stopped: {why}", app_fault=False)
        await recover(ctx, report)
    record.notes.append(f"recovered after its driver stopped ({why})")
    return await finish(ctx)


def _reachable(ctx: Context) -> list[HostSpec]:
    return [h for h in ctx.hosts if ctx.progress(h).locked]


async def look(ctx: Context, host: HostSpec) -> None:
    """Fence the host, reconcile an unfinished switch, and learn whether this
    deployment's colour is what the proxy serves."""
    progress = ctx.progress(host)
    try:
        fenced = await ctx.run(
            host, state_commands.fence(ctx.layout, ctx.deployment.token), phase=PHASE, quiet=True
        )
        progress.epoch = int(parse_facts(fenced.lines)["epoch"])
        result = await ctx.run(host, state_commands.read(ctx.layout), phase=PHASE, quiet=True)
        state = parse_host_state(host.name, result.output)
        if state.switch is not None:
            state = await reconcile(ctx, host, state, phase=PHASE)
    except (HostError, Refused) as exc:
        ctx.deployment.notes.append(f"{host.name}: could not be looked at ({exc})")
        return
    mine = state.colors.get(progress.target) if progress.target else None
    progress.staged = progress.staged or bool(mine and mine.deployment == ctx.deployment.id)
    live = state.live
    progress.switched = bool(
        live and live.deployment == ctx.deployment.id and live.color == progress.target
    )
    await ctx.emit(
        Kind.step,
        f"epoch {progress.epoch}; {'serves' if progress.switched else 'does not serve'} "
        f"{ctx.deployment.version}",
        phase=PHASE,
        host=host.name,
    )
