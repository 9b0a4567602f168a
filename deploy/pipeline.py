"""Drive the phases in-process: the whole deployment (or rollback) in one call.

`run_phase` is the wrapper every driver uses: it emits started/finished/failed events,
times the phase, and turns any error into a `FailureReport`. `recover` is what happens
after a failure: switch back whatever switched, tear down what was started, record
the verdict, release the locks. The jobs layer calls the same functions per job.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from deploy import probes
from deploy.commands import compose
from deploy.commands import state as state_commands
from deploy.context import Cancelled, Context, PhaseFailed, Refused, StepFailed
from deploy.deployment import Deployment, FailureReport, HostProgress
from deploy.events import Event, EventSink, Kind
from deploy.executor import CommandFailed, HostError, HostUnreachable
from deploy.phases.backup import backup
from deploy.phases.finalize import finalize
from deploy.phases.monitor import monitor
from deploy.phases.preflight import preflight, release_all, take_locks
from deploy.phases.prepare import new_deployment, prepare
from deploy.phases.record import record_history, record_verdict
from deploy.phases.rollback import ensure_running, rollback_switched, teardown_host
from deploy.phases.stage import stage
from deploy.phases.switch import switch
from deploy.phases.verify import smoke, verify
from deploy.registry import RegistryError
from deploy.spec import HostSpec, Spec, SpecError
from deploy.state import HostState, now, parse_host_state
from deploy.versions import InvalidVersion, deployment_id, parse_version

Phase = Callable[[Context], Awaitable[None]]
CancelCheck = Callable[[], Awaitable[bool]]

DEPLOY_PHASES: list[tuple[str, Phase]] = [
    ("prepare", prepare),
    ("preflight", preflight),
    ("backup", backup),
    ("stage", stage),
    ("verify", verify),
    ("smoke", smoke),
    ("switch", switch),
    ("monitor", monitor),
    ("finalize", finalize),
]
# Failures in these phases say something about the release itself.
APP_PHASES = {"stage", "verify", "smoke", "monitor"}
LOG_PHASES = {"stage", "verify", "smoke", "monitor"}


async def run_phase(ctx: Context, name: str, phase: Phase) -> None:
    await ctx.emit(Kind.phase_started, name, phase=name)
    started = time.monotonic()
    try:
        await ctx.check_cancelled()
        await phase(ctx)
    except Refused:
        ctx.deployment.phases[name] = round(time.monotonic() - started, 3)
        raise
    except Exception as exc:  # every failure becomes a report; nothing escapes unrecorded
        ctx.deployment.phases[name] = round(time.monotonic() - started, 3)
        report = await failure_report(ctx, name, exc)
        await ctx.emit(
            Kind.phase_failed,
            report.message,
            phase=name,
            host=report.host,
            report=report.model_dump(),
        )
        raise PhaseFailed(report) from exc
    took = round(time.monotonic() - started, 3)
    ctx.deployment.phases[name] = took
    await ctx.emit(Kind.phase_finished, name, phase=name, seconds=took)


async def failure_report(ctx: Context, phase: str, exc: Exception) -> FailureReport:
    if isinstance(exc, PhaseFailed):
        return exc.report
    report = FailureReport(phase=phase, message=str(exc) or type(exc).__name__)
    if isinstance(exc, HostError):
        report.host = exc.host
        report.message = exc.reason
    if isinstance(exc, CommandFailed):
        report.step = exc.cmd.step
        report.command = exc.command_text
        report.exit_status = exc.result.exit_status
        report.output = exc.result.tail
    elif isinstance(exc, StepFailed):
        report.step = exc.step
        report.output = exc.output
    elif isinstance(exc, probes.ProbeFailed):
        report.host = exc.host
        report.output = [p.summary for p in exc.probes]
    elif not isinstance(exc, (HostError, RegistryError, Cancelled)):
        report.message = f"unexpected {type(exc).__name__}: {exc}"
    pulling = report.step is not None and report.step.startswith("pull ")
    report.app_fault = (
        phase in APP_PHASES and not isinstance(exc, (HostUnreachable, Cancelled)) and not pulling
    )
    if phase in LOG_PHASES and not isinstance(exc, HostUnreachable):
        hosts = [ctx.host(report.host)] if report.host else ctx.hosts
        lines = 30 if len(hosts) == 1 else 8
        for host in hosts:
            logs = await _container_logs(ctx, host, lines)
            report.container_logs += (
                logs if len(hosts) == 1 else [f"{host.name}: {x}" for x in logs]
            )
    return report


async def _container_logs(ctx: Context, host: HostSpec, lines: int) -> list[str]:
    if ctx.progress(host).target is None:
        return []
    try:
        result = await ctx.run(
            host,
            compose.logs(ctx.target_slot(host), lines),
            phase="report",
            check=False,
            quiet=True,
        )
    except HostError:
        return []
    return result.tail


async def recover(ctx: Context, report: FailureReport) -> None:
    """After a failure: switch back, tear down, record, release. Sets the outcome."""
    record = ctx.deployment
    record.failure = report
    ctx.unwinding = True
    switched = [h for h in ctx.hosts if ctx.progress(h).switched]
    outcome = "rolled_back" if switched else "not_switched"
    if switched:
        await ctx.emit(
            Kind.rollback_started,
            f"rolling back {', '.join(h.name for h in switched)} to "
            f"{record.previous_version or 'the previous state'}",
            phase="rollback",
        )
        try:
            await run_phase(ctx, "rollback", rollback_switched)
        except PhaseFailed as exc:
            outcome = "unknown"
            record.notes.append(f"rollback failed: {exc.report.message}")
        else:
            await ctx.emit(
                Kind.rollback_finished,
                f"traffic is back on {record.previous_version}",
                phase="rollback",
                seconds=record.phases.get("rollback"),
            )
    if outcome != "unknown":
        for host in ctx.hosts:
            try:
                await teardown_host(ctx, host, phase="cleanup")
            except HostError as exc:
                record.notes.append(f"{host.name}: {record.version} left running ({exc.reason})")
    record.finished_at = now()
    record.outcome = outcome  # type: ignore[assignment]
    await _record_failure(ctx, report)
    if outcome != "unknown":
        await release_all(ctx)
    else:
        record.notes.append("locks kept: the final state needs a human look")


async def _record_failure(ctx: Context, report: FailureReport) -> None:
    record = ctx.deployment

    async def write(host: HostSpec) -> None:
        if not ctx.progress(host).locked:
            return
        try:
            if report.app_fault:
                await record_verdict(
                    ctx,
                    host,
                    record.version,
                    "bad",
                    f"{report.phase}: {report.message}",
                    phase="cleanup",
                )
            await record_history(ctx, host, record.outcome, phase="cleanup")
        except HostError as exc:
            record.notes.append(f"{host.name}: outcome not recorded ({exc.reason})")

    await ctx.each_host(write)


async def run_deploy_phases(ctx: Context, phases: list[tuple[str, Phase]]) -> Deployment:
    record = ctx.deployment
    await ctx.emit(
        Kind.deploy_started,
        f"{record.kind} {record.version} to {record.env} by {record.who}",
        version=record.version,
        env=record.env,
        who=record.who,
        hosts=[h.name for h in ctx.hosts],
    )
    try:
        for name, phase in phases:
            await run_phase(ctx, name, phase)
    except Refused as exc:
        record.outcome = "refused"
        record.failure = FailureReport(phase="refused", message=str(exc))
        record.finished_at = now()
    except PhaseFailed as exc:
        await recover(ctx, exc.report)
    finally:
        await ctx.close()
    await ctx.emit(
        Kind.deploy_finished,
        _summary(record),
        outcome=record.outcome,
        exit_code=record.exit_code,
        phases=record.phases,
        notes=record.notes,
        failure=record.failure.model_dump() if record.failure else None,
    )
    return record


def _summary(record: Deployment) -> str:
    what = f"{record.kind} of {record.version} to {record.env}"
    return {
        "live": f"{what}: {record.version} is live",
        "rolled_back": f"{what} failed and was rolled back to {record.previous_version}",
        "not_switched": f"{what} failed before the switch; production untouched",
        "refused": f"{what} refused: {record.failure.message if record.failure else ''}",
        "unknown": f"{what}: FINAL STATE UNKNOWN, check the hosts",
        "pending": f"{what}: unfinished",
    }[record.outcome]


async def deploy(
    spec: Spec,
    env_name: str | None,
    version: str,
    who: str,
    sink: EventSink,
    *,
    registry_password: str | None = None,
    cancel: CancelCheck | None = None,
) -> Deployment:
    """The whole pipeline; never raises for a deployment problem, read `.outcome`."""
    try:
        record = new_deployment(spec, env_name, version, who)
    except Refused as exc:
        plan = Deployment(id="refused", env=env_name or "?", version=version[:64], who=who)
        return await _refused(plan, str(exc), sink)
    env = spec.environment(record.env)
    ctx = Context(
        spec, env, record, sink, registry_password=registry_password, cancel_requested=cancel
    )
    return await run_deploy_phases(ctx, DEPLOY_PHASES)


# -- rollback on demand -------------------------------------------------------------


def choose_rollback(states: list[HostState], to: str | None) -> tuple[str, str, str]:
    """(version, image, digest) every host can go back to at once, or Refused saying why."""
    targets = set()
    for state in states:
        if state.live is None or state.live_record is None:
            raise Refused(f"{state.host}: nothing is live, so there is nothing to roll back")
        idle = state.colors.get(state.idle_color())
        if idle is None or idle.status in ("removed", "failed", "staging"):
            good = sorted(
                v
                for v, r in state.verdicts.items()
                if r.verdict == "good" and v != state.live.version
            )
            hint = f"; redeploy one with --to ({', '.join(good)})" if good else ""
            raise Refused(
                f"{state.host}: no previous version is kept beside {state.live.version}{hint}"
            )
        if to is not None and idle.version != to:
            raise Refused(f"{state.host}: the previous colour runs {idle.version}, not {to}")
        if state.is_bad(idle.version):
            reason = state.verdicts[idle.version].reason
            raise Refused(
                f"{state.host}: the previous version {idle.version} is recorded as bad "
                f"({reason}); nothing good to return to"
            )
        targets.add((idle.version, idle.image, idle.digest))
    if len(targets) != 1:
        raise Refused(
            "hosts disagree on the previous version: " + ", ".join(sorted(t[0] for t in targets))
        )
    return targets.pop()


async def _restore(ctx: Context) -> None:
    """The rollback's stage+verify: the previous colour must be running and healthy."""

    async def warm(host: HostSpec) -> None:
        await ensure_running(ctx, host, ctx.target_slot(host), phase="restore")
        ctx.progress(host).verified = True

    await ctx.each_host(warm)


ROLLBACK_PHASES: list[tuple[str, Phase]] = [
    ("preflight", take_locks),
    ("restore", _restore),
    ("switch", switch),
    ("finalize", finalize),
]


async def rollback(
    spec: Spec,
    env_name: str | None,
    who: str,
    sink: EventSink,
    *,
    to: str | None = None,
    registry_password: str | None = None,
    cancel: CancelCheck | None = None,
) -> Deployment:
    """Go back to the previous colour's version (or `to`); refused when nothing good is kept.

    `to` a version that no colour keeps any more becomes a full deployment of it,
    provided it was once live here and is not recorded as bad.
    """
    plan = Deployment(id="rollback", kind="rollback", env=env_name or "?", version="?", who=who)
    try:
        env = spec.environment(env_name)
        wanted = parse_version(to).tag if to else None
    except (SpecError, InvalidVersion) as exc:
        return await _refused(plan, str(exc), sink)
    ctx = Context(
        spec, env, plan, sink, registry_password=registry_password, cancel_requested=cancel
    )
    try:
        states = await read_states(ctx)
        if wanted and not all(_keeps(state, wanted) for state in states):
            await ctx.close()
            return await _redeploy(spec, env.name, wanted, who, sink, states, registry_password)
        version, image, digest = choose_rollback(states, wanted)
    except (Refused, HostError) as exc:
        await ctx.close()
        return await _refused(plan, str(exc), sink)
    ctx.deployment = Deployment(
        id=deployment_id(env.name, parse_version(version)),
        kind="rollback",
        env=env.name,
        version=version,
        image=image,
        digest=digest,
        who=who,
    )
    ctx.deployment.hosts = {h.name: HostProgress(name=h.name) for h in env.hosts}
    return await run_deploy_phases(ctx, ROLLBACK_PHASES)


def _keeps(state: HostState, version: str) -> bool:
    idle = state.colors.get(state.idle_color())
    return idle is not None and idle.version == version and idle.status in ("running", "stopped")


async def _redeploy(
    spec: Spec,
    env: str,
    version: str,
    who: str,
    sink: EventSink,
    states: list[HostState],
    registry_password: str | None,
) -> Deployment:
    plan = Deployment(id="rollback", kind="rollback", env=env, version=version, who=who)
    for state in states:
        if state.is_bad(version):
            reason = state.verdicts[version].reason
            return await _refused(plan, f"{version} is recorded as bad ({reason})", sink)
    if not any(version in s.verdicts for s in states):
        return await _refused(plan, f"{version} was never live here; use deploy", sink)
    return await deploy(spec, env, version, who, sink, registry_password=registry_password)


async def _refused(record: Deployment, message: str, sink: EventSink) -> Deployment:
    record.outcome = "refused"
    record.failure = FailureReport(phase="refused", message=message)
    record.finished_at = now()
    await sink.emit(
        Event(
            kind=Kind.deploy_finished,
            deployment=record.id,
            message=_summary(record),
            data={"outcome": "refused", "exit_code": 2, "failure": record.failure.model_dump()},
        )
    )
    return record


async def read_states(ctx: Context) -> list[HostState]:
    async def read(host: HostSpec) -> HostState:
        result = await ctx.run(host, state_commands.read(ctx.layout), phase="status", quiet=True)
        return parse_host_state(host.name, result.tail)

    return await ctx.each_host(read)
