"""Drive the phases in-process: the whole deployment (or rollback) in one call.

`run_phase` is the wrapper every driver uses: it emits started/finished/failed events,
times the phase, and turns any error into a `FailureReport`. `recover` is what happens
after a failure: switch back whatever switched, tear down what was started, record
the verdict, release the locks. The jobs layer calls the same functions per job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from deploy.commands import compose
from deploy.commands import state as state_commands
from deploy.context import Context
from deploy.deployment import Deployment, FailureReport
from deploy.errors import (
    GreenlightError,
    HostError,
    HostUnreachable,
    PhaseFailed,
    PhaseOverran,
    Refused,
    SpecChanged,
)
from deploy.events import DeployFinished, EventSink, Kind
from deploy.ops.colors import teardown
from deploy.ops.locks import release_all
from deploy.ops.records import record_history, record_verdict
from deploy.phases.backup import backup
from deploy.phases.finalize import finalize
from deploy.phases.monitor import monitor
from deploy.phases.preflight import preflight, take_locks
from deploy.phases.prepare import new_deployment, prepare
from deploy.phases.restore import restore
from deploy.phases.rollback import rollback_switched
from deploy.phases.smoke import smoke
from deploy.phases.stage import stage
from deploy.phases.switch import switch
from deploy.phases.test import run_tests
from deploy.phases.verify import verify
from deploy.registry import RegistryError
from deploy.spec import HookSpec, HostSpec, Spec, SpecError
from deploy.state import ColorRecord, HistoryEntry, HostState, now, parse_host_state
from deploy.versions import InvalidVersion, parse_version

Phase = Callable[[Context], Awaitable[object]]
CancelCheck = Callable[[], Awaitable[bool]]

DEPLOY_PHASES: list[tuple[str, Phase]] = [
    ("prepare", prepare),
    ("preflight", preflight),
    ("backup", backup),
    ("stage", stage),
    ("verify", verify),
    ("test", run_tests),
    ("smoke", smoke),
    ("switch", switch),
    ("monitor", monitor),
    ("finalize", finalize),
]
# Failures in these phases can say something about the release itself.
APP_PHASES = {"stage", "verify", "test", "smoke", "monitor"}


def phase_budgets(ctx: Context) -> dict[str, float]:
    """Seconds each phase may take: the sum of the spec's own timeouts for it, times the
    batches its hosts run in, plus slack for round trips."""
    env = ctx.env
    batches = -(-len(env.hosts) // env.parallel)
    hooks = env.hooks
    images = len(ctx.spec.images) or 1

    def hook(spec: HookSpec | None) -> float:
        return spec.timeout if spec else 0.0

    start = images * env.pull_timeout + env.boot_timeout + env.health.deadline
    per_host = {
        "plan": 60.0,
        "preflight": 60.0,
        "backup": hook(hooks.backup) + 120,
        "stage": start + hook(hooks.migrate) + hook(hooks.static) + 60,
        "verify": env.health.deadline + sum(c.timeout for c in env.dependencies) + 30,
        "test": hook(hooks.test) + 30,
        "smoke": sum(r.max_latency for r in env.smoke) + 10.0 * len(env.smoke) + 30,
        "switch": 60 + env.proxy.confirm_timeout + env.proxy.confirm_settle,
        "restore": start + 60,
        "finalize": 120.0,
        "rollback": env.boot_timeout + env.health.deadline + env.proxy.confirm_timeout + 60,
        "cleanup": 180.0,
    }
    window = env.stability
    return {name: seconds * batches for name, seconds in per_host.items()} | {
        "prepare": ctx.spec.registry.timeout * 2 + 30,
        "monitor": window.duration + window.interval + window.timeout + 30,
        "finalize": per_host["finalize"] * batches + env.drain,
    }


async def run_phase(ctx: Context, name: str, phase: Phase) -> None:
    await ctx.emit(Kind.phase_started, name, phase=name)
    started = time.monotonic()
    record = ctx.deployment
    budget = record.budgets.get(name) or phase_budgets(ctx).get(name, 3600.0)
    try:
        if record.spec_hash and record.spec_hash != ctx.spec.fingerprint():
            raise SpecChanged(
                f"the spec changed since {record.id} was planned; it is not used half-way"
            )
        await ctx.check_cancelled()
        try:
            async with asyncio.timeout(budget):
                await phase(ctx)
        except TimeoutError:
            raise PhaseOverran(
                f"{name} took longer than its budget of {budget:g} s (from the spec's timeouts)"
            ) from None
    except Refused:
        ctx.deployment.phases[name] = round(time.monotonic() - started, 3)
        raise
    except Exception as exc:  # every failure becomes a report; nothing escapes unrecorded
        took = ctx.deployment.phases[name] = round(time.monotonic() - started, 3)
        report = await failure_report(ctx, name, exc)
        await ctx.emit(
            Kind.phase_failed,
            report.message,
            phase=name,
            host=report.host,
            report=report,
            seconds=took,
        )
        raise PhaseFailed(report) from exc
    took = round(time.monotonic() - started, 3)
    ctx.deployment.phases[name] = took
    await ctx.emit(Kind.phase_finished, name, phase=name, seconds=took)


async def failure_report(ctx: Context, phase: str, exc: Exception) -> FailureReport:
    if isinstance(exc, PhaseFailed):
        return exc.report
    report = FailureReport(phase=phase, message=str(exc) or type(exc).__name__)
    if isinstance(exc, GreenlightError):
        exc.describe(report)
        report.app_fault = phase in APP_PHASES and exc.blames_release
    elif not isinstance(exc, RegistryError):
        report.message = f"unexpected {type(exc).__name__}: {exc}"
    # The same phases run the release's containers: their logs go into the report.
    if phase in APP_PHASES and not isinstance(exc, HostUnreachable):
        hosts = [ctx.host(report.host)] if report.host else ctx.hosts
        lines = 30 if len(hosts) == 1 else 8
        for host in hosts:
            logs = await _container_logs(ctx, host, lines)
            report.container_logs += (
                logs if len(hosts) == 1 else [f"{host.name}: {x}" for x in logs]
            )
    return FailureReport.model_validate(ctx.redact.deep(report.model_dump()))


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
        first_error = report.first_error_at
        await ctx.emit(
            Kind.rollback_started,
            f"rolling back {', '.join(h.name for h in switched)} to {went_back_to(record)}",
            phase="rollback",
            detected_in=round(time.time() - first_error, 3) if first_error else None,
        )
        try:
            await run_phase(ctx, "rollback", rollback_switched)
        except PhaseFailed as exc:
            outcome = "unknown"
            record.notes.append(f"rollback failed: {exc.report.message}")
        else:
            await ctx.emit(
                Kind.rollback_finished,
                f"traffic is back on {went_back_to(record)}",
                phase="rollback",
                seconds=record.phases.get("rollback"),
            )
    if outcome != "unknown":
        for host in ctx.hosts:
            try:
                await teardown(ctx, host, phase="cleanup")
            except HostError as exc:
                # Teardown unmarks `staged` once the new colour is removed: a failure
                # after that (putting the good release back) left nothing running.
                gone = not ctx.progress(host).staged
                state = "removed; cleanup unfinished" if gone else "left running"
                record.notes.append(f"{host.name}: {record.version} {state} ({exc.reason})")
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


async def begin(ctx: Context) -> None:
    """Plan-time facts into the record (spec hash, budgets), and the start event."""
    record = ctx.deployment
    record.app = ctx.spec.app
    record.spec_hash = record.spec_hash or ctx.spec.fingerprint()
    record.budgets = record.budgets or phase_budgets(ctx)
    what = record.version if record.version != UNPLANNED else "to the last good release"
    await ctx.emit(
        Kind.deploy_started,
        f"{record.kind} {what} to {record.env} by {record.who}"
        + (" (tests skipped)" if record.skip_tests else ""),
        app=record.app,
        version=record.version,
        env=record.env,
        who=record.who,
        hosts=[h.name for h in ctx.hosts],
        skip_tests=record.skip_tests,
    )


async def finish(ctx: Context) -> Deployment:
    record = ctx.deployment
    record.notes = [ctx.redact(note) for note in record.notes]
    await ctx.close()
    await ctx.emit(
        Kind.deploy_finished,
        summary(record),
        outcome=record.outcome,
        exit_code=record.exit_code,
        phases=record.phases,
        notes=record.notes,
        failure=record.failure,
        skip_tests=record.skip_tests,
    )
    return record


async def next_phase(ctx: Context, phases: list[tuple[str, Phase]]) -> str | None:
    """Run the first phase the cursor has not passed; its name, or None when every phase
    is done. Raises Refused or PhaseFailed for `settle`."""
    for name, phase in phases:
        if name not in ctx.deployment.completed:
            await run_phase(ctx, name, phase)
            ctx.deployment.completed.append(name)
            return name
    return None


async def settle(ctx: Context, exc: Refused | PhaseFailed) -> None:
    """What a refusal or a failed phase leaves: the record says refused, or recovery
    puts production back."""
    record = ctx.deployment
    if isinstance(exc, Refused):
        record.outcome = "refused"
        record.failure = FailureReport(phase="refused", message=ctx.redact(str(exc)))
        record.finished_at = now()
    else:
        await recover(ctx, exc.report)


async def run_deploy_phases(ctx: Context, phases: list[tuple[str, Phase]]) -> Deployment:
    """begin, every phase in turn, settle on failure, finish: the in-process driver. A
    job-per-phase driver calls the same four functions, one phase per job."""
    await begin(ctx)
    try:
        while await next_phase(ctx, phases):
            pass
    except (Refused, PhaseFailed) as exc:
        await settle(ctx, exc)
    except BaseException:
        await ctx.close()
        raise
    return await finish(ctx)


def went_back_to(record: Deployment) -> str:
    """What a rollback returns to, in words: the version the hosts ran before, or, when
    they ran different ones or nothing was live, never the word None."""
    return record.previous_version or "the previous state"


def summary(record: Deployment) -> str:
    what = f"{record.kind} of {record.version} to {record.env}"
    if record.kind == "rollback" and record.outcome == "refused":
        asked = f" to {record.version}" if record.version != UNPLANNED else ""
        what = f"rollback of {record.env}{asked}"
    skipped = " (tests skipped)" if record.skip_tests else ""
    return {
        "live": f"{what}: {record.version} is live{skipped}",
        "rolled_back": f"{what} failed and was rolled back to {went_back_to(record)}",
        "not_switched": f"{what} failed before the switch; production untouched",
        "refused": f"{what} refused: {record.failure.message if record.failure else ''}",
        "unknown": f"{what}: FINAL STATE UNKNOWN, check the hosts",
        "pending": f"{what}: unfinished",
    }[record.outcome]


def context(
    spec: Spec,
    record: Deployment,
    sink: EventSink,
    registry_password: str | None,
    cancel: CancelCheck | None,
) -> Context:
    return Context(
        spec,
        spec.environment(record.env),
        record,
        sink,
        registry_password=registry_password,
        cancel_requested=cancel,
    )


async def deploy(
    spec: Spec,
    env_name: str | None,
    version: str,
    who: str,
    sink: EventSink,
    *,
    registry_password: str | None = None,
    cancel: CancelCheck | None = None,
    skip_tests: bool = False,
) -> Deployment:
    """The whole pipeline; never raises for a deployment problem, read `.outcome`."""
    try:
        record = new_deployment(spec, env_name, version, who)
    except Refused as exc:
        plan = Deployment(
            id=_request_id(env_name or "?", "invalid"), env=env_name or "?", version="?", who=who
        )
        return await _refused(plan, str(exc), sink)
    record.skip_tests = skip_tests
    ctx = context(spec, record, sink, registry_password, cancel)
    return await run_deploy_phases(ctx, DEPLOY_PHASES)


def _request_id(env: str, what: str) -> str:
    return f"{env}-{what}-{now():%Y%m%d_%H%M%S}"


# -- rollback on demand -------------------------------------------------------------


@dataclass(frozen=True)
class RollbackPlan:
    version: str
    image: str
    digest: str
    images: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, release: ColorRecord | HistoryEntry, image: str) -> RollbackPlan:
        """The release a colour keeps or the history recorded (older lines name only
        the digest of the spec's image)."""
        ref = release.image or f"{image}@{release.digest}"
        return cls(release.version, ref, release.digest, tuple(sorted(release.images.items())))


def choose_rollback(states: list[HostState], to: str | None, image: str) -> RollbackPlan:
    """The release every host goes back to: `to`, or the last good release before the
    live one, whatever failed in between. Refused, saying why, when there is none."""
    plans = {_host_plan(state, to, image) for state in states}
    if len(plans) != 1:
        raise Refused(
            "hosts disagree on the previous version: " + ", ".join(sorted(p.version for p in plans))
        )
    return plans.pop()


def _host_plan(state: HostState, to: str | None, image: str) -> RollbackPlan:
    if state.live is None or state.live_record is None:
        raise Refused(f"{state.host}: nothing is live, so there is nothing to roll back")
    live = state.live_record
    idle = state.colors.get(state.idle_color())
    kept = idle if idle and idle.status in ("running", "stopped") else None
    if to is not None:
        if to == live.version:
            raise Refused(f"{state.host}: {to} is what is live now")
        if state.is_bad(to):
            raise Refused(f"{state.host}: {to} is recorded as bad; it is never rolled back to")
        if kept is not None and kept.version == to:
            return RollbackPlan.of(kept, image)
        released = [e for e in state.releases if e.version == to and e.digest]
        if not released:
            raise Refused(f"{state.host}: {to} was never live here; use deploy")
        return RollbackPlan.of(released[-1], image)
    entry = state.last_good_release()
    if entry is not None and entry.digest:
        if kept is not None and kept.version == entry.version:
            return RollbackPlan.of(kept, image)
        return RollbackPlan.of(entry, image)
    if kept is not None and not state.is_bad(kept.version) and kept.version != live.version:
        return RollbackPlan.of(kept, image)
    raise Refused(
        f"{state.host}: no good release before {live.version} is known here "
        + ("(the previous one is recorded as bad)" if kept else "(nothing was live before it)")
    )


async def plan_rollback(ctx: Context) -> None:
    """The rollback's first phase: read every host and choose where to go back to (the
    version asked for, or the last good release before the live one). Refused, saying
    why, when there is nowhere to go."""
    record = ctx.deployment
    if record.image:
        return  # planned already (a retried job)
    wanted = None if record.version == UNPLANNED else record.version
    try:
        chosen = choose_rollback(await read_states(ctx), wanted, ctx.spec.main_image)
    except HostError as exc:  # nothing was touched: a host we cannot read refuses it
        raise Refused(str(exc)) from None
    record.version, record.image, record.digest = chosen.version, chosen.image, chosen.digest
    record.images = dict(chosen.images)


ROLLBACK_PHASES: list[tuple[str, Phase]] = [
    ("plan", plan_rollback),
    ("preflight", take_locks),
    ("restore", restore),
    ("switch", switch),
    ("finalize", finalize),
]
UNPLANNED = "?"


def new_rollback(spec: Spec, env_name: str | None, to: str | None, who: str) -> Deployment:
    """A rollback request with its real id (`<env>-rollback-<stamp>`) from the start, so
    a refusal matches the message that asked; Refused for a bad environment or version."""
    try:
        env = spec.environment(env_name)
        wanted = parse_version(to).tag if to else UNPLANNED
    except (SpecError, InvalidVersion) as exc:
        raise Refused(str(exc)) from None
    return Deployment(
        id=_request_id(env.name, "rollback"), kind="rollback", env=env.name, version=wanted, who=who
    )


def phases_of(record: Deployment) -> list[tuple[str, Phase]]:
    return ROLLBACK_PHASES if record.kind == "rollback" else DEPLOY_PHASES


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
    """Go back to the last good release before the live one (or `to`): a reload when the
    idle colour keeps it warm, a restore from its image when it does not."""
    try:
        plan = new_rollback(spec, env_name, to, who)
    except Refused as exc:
        refused = Deployment(
            id=_request_id(env_name or "?", "rollback"),
            kind="rollback",
            env=env_name or "?",
            version=UNPLANNED,
            who=who,
        )
        return await _refused(refused, str(exc), sink)
    ctx = context(spec, plan, sink, registry_password, cancel)
    return await run_deploy_phases(ctx, ROLLBACK_PHASES)


async def _refused(record: Deployment, message: str, sink: EventSink) -> Deployment:
    record.outcome = "refused"
    record.failure = FailureReport(phase="refused", message=message)
    record.finished_at = now()
    await sink.emit(
        DeployFinished(
            deployment=record.id,
            message=summary(record),
            outcome="refused",
            exit_code=2,
            failure=record.failure,
        )
    )
    return record


async def read_states(ctx: Context) -> list[HostState]:
    async def read(host: HostSpec) -> HostState:
        result = await ctx.run(host, state_commands.read(ctx.layout), phase="status", quiet=True)
        return parse_host_state(host.name, result.output)

    return await ctx.each_host(read)
