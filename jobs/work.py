"""The phase job: load the deployment from Redis, run its next phase with the engine,
save what it learned, and enqueue the next phase, or settle and finish.

Nothing is trusted from another job's process memory: the engine's record (cursor,
plan, host tokens, epochs) travels in Redis between jobs, and each job opens its own
SSH connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import timedelta

import redis
from rq import get_current_job
from rq.job import Job

from deploy.context import Context
from deploy.deployment import Deployment
from deploy.errors import CANCELLED, LockHeld, PhaseFailed, Refused
from deploy.logs import working_on
from deploy.pipeline import CancelCheck, begin, finish, next_phase, phases_of, settle
from deploy.spec import choose_app, load_specs
from deploy.takeover import take_over
from jobs import metrics
from jobs.lease import Holder, Lease
from jobs.queue import TIMEOUT_SLACK, connect, enqueue_phase, job_id, queue
from jobs.records import DeploymentRecord, RecordStore, State
from jobs.streams import AuditEntry, RedisSink, audit
from jobs.sweeper import HEARTBEAT_KEY, RECOVERING_KEY, heartbeat

CANCEL_KEY = "greenlight:cancel:{id}"
# Where a manual promotion stops the chain: after smoke, the new colour running and
# verified, before the switch.
GATE = "smoke"
OUTCOME_STATES: dict[str, State] = {
    "live": "live",
    "rolled_back": "rolled_back",
    "not_switched": "not_switched",
    "refused": "refused",
    "unknown": "unknown",
    "pending": "unknown",
}


def run_phase_job(deployment_id: str) -> None:
    """RQ's entry point (a plain importable function taking an id)."""
    connection = connect()
    try:
        with working_on(deployment_id):
            asyncio.run(advance(connection, deployment_id))
    finally:
        connection.close()


async def advance(connection: redis.Redis, deployment_id: str) -> None:
    store = RecordStore(connection)
    record = store.load(deployment_id)
    if record is None or record.final or record.deployment is None:
        return  # a job for a deployment that ended (or never was): nothing to do
    if record.state in ("awaiting_approval", "awaiting_promotion"):
        return  # only an approval or a promote (which move the record on) continues it
    job = get_current_job()
    metrics.queue_waited(record.app, record.env, job.enqueued_at if job else None)
    ctx = engine_context(connection, record, cancel_flag(connection, deployment_id))
    holder = lease_holder(record)
    lease = Lease(connection, record.app, record.env)
    if record.state == "queued":
        await begin(ctx)
    upcoming = remaining(ctx)
    lease.renew(holder, ttl=ctx.deployment.budgets.get(upcoming[0], 600) + TIMEOUT_SLACK)
    store.advance(deployment_id, "running", phase=upcoming[0], engine=ctx.deployment)
    try:
        async with heartbeat(connection, deployment_id):
            ran = await next_phase(ctx, phases_of(ctx.deployment))
    except (Refused, PhaseFailed) as exc:
        if isinstance(exc, Refused):
            refused_in(ctx, upcoming[0], exc)
        await settle(ctx, exc)
        await conclude(store, lease, holder, ctx)
        return
    left = remaining(ctx)
    if not left:
        await conclude(store, lease, holder, ctx)
        return
    if ran == GATE and ctx.env.promote == "manual" and ctx.deployment.kind == "deploy":
        await ctx.close()
        await hold_for_promotion(store, lease, holder, ctx)
        return
    # The next phase is queued before this job closes its SSH connections and RQ does its
    # bookkeeping: an idle worker starts it at once. The record is saved first, so that
    # job reads what this one learned; it opens connections of its own.
    store.save_engine(deployment_id, ctx.deployment)
    enqueue_phase(connection, deployment_id, left[0], ctx.deployment.budgets.get(left[0], 600))
    await ctx.close()


async def hold_for_promotion(
    store: RecordStore, lease: Lease, holder: Holder, ctx: Context
) -> None:
    """Stop the chain before the switch, holding no worker: the new colour runs,
    verified, until someone promotes or aborts it, or RQ's scheduler times it out."""
    record = ctx.deployment
    wait = ctx.env.promote_timeout
    lease.renew(holder, ttl=wait + TIMEOUT_SLACK)
    store.advance(
        record.id,
        "awaiting_promotion",
        phase="switch",
        note=f"{record.version} runs beside the live release; promote within {wait:g} s",
        engine=record,
    )
    schedule_expiry(store.redis, record.id, "awaiting_promotion", wait)


def schedule_expiry(
    connection: redis.Redis, deployment_id: str, state: State, after: float
) -> None:
    """RQ's scheduler ends a request still in `state` (awaiting approval or promotion)
    after `after` seconds; `drop_expiry` takes the job back when a person acts first."""
    queue(connection).enqueue_in(
        timedelta(seconds=after),
        "jobs.work.expire_job",
        deployment_id,
        state,
        after,
        job_id=job_id(deployment_id, f"expire-{state}"),
        job_timeout=300,
        result_ttl=600,
        description=f"{deployment_id}: {state.replace('_', ' ')} times out",
    )


def drop_expiry(connection: redis.Redis, deployment_id: str, state: State) -> None:
    with contextlib.suppress(Exception):  # already run, or never scheduled
        Job.fetch(job_id(deployment_id, f"expire-{state}"), connection=connection).delete()


def expire_job(deployment_id: str, state: State, after: float) -> None:
    """RQ's entry point for a request nobody acted on in time."""
    connection = connect()
    try:
        expire(connection, deployment_id, state, after)
    finally:
        connection.close()


def expire(connection: redis.Redis, deployment_id: str, state: State, after: float) -> None:
    store = RecordStore(connection)
    record = store.load(deployment_id)
    if record is None or record.state != state:
        return  # someone acted first
    why = f"{state.replace('_', ' ').replace('awaiting', 'no')} within {after:g} s"
    if state == "awaiting_approval":
        store.advance(deployment_id, "cancelled", by="greenlight", note=why)
        Lease(connection, record.app, record.env).release(lease_holder(record))
    else:  # the new colour is torn down by the engine, as for any cancel before the switch
        resume(connection, record, "greenlight", cancel=why)
    audit_own(connection, "expire", record, why)


def resume(
    connection: redis.Redis, record: DeploymentRecord, who: str, cancel: str | None = None
) -> None:
    """Continue a deployment held for promotion: the switch, or with `cancel` (why) the
    engine's way back (the new colour torn down, production untouched)."""
    assert record.deployment is not None
    if cancel is not None:
        connection.set(CANCEL_KEY.format(id=record.id), f"{who}: {cancel}", ex=86_400)
    drop_expiry(connection, record.id, "awaiting_promotion")
    phase = remaining_of(record.deployment)[0]
    store = RecordStore(connection)
    store.advance(record.id, "running", phase=phase, by=who, note=cancel or "promoted")
    enqueue_phase(connection, record.id, phase, record.deployment.budgets.get(phase, 600))


def engine_context(
    connection: redis.Redis, record: DeploymentRecord, cancel: CancelCheck | None
) -> Context:
    """The engine's context for this job: the spec as it is now (a changed one is
    refused by the engine), the record from Redis, events to the stream."""
    assert record.deployment is not None
    spec = choose_app(load_specs(), record.app)
    return Context(
        spec,
        spec.environment(record.env),
        record.deployment,
        RedisSink(connection, app=record.app, env=record.env),
        registry_password=os.environ.get("GREENLIGHT_REGISTRY_PASSWORD") or None,
        cancel_requested=cancel,
    )


def refused_in(ctx: Context, phase: str, exc: Refused) -> None:
    """A refusal emits no event: its phase's time and a held host lock counted here."""
    app, env = ctx.spec.app, ctx.env.name
    metrics.phase_refused(app, env, phase, ctx.deployment.phases.get(phase))
    if isinstance(exc, LockHeld):
        metrics.host_lock_refused(app, env)


def remaining(ctx: Context) -> list[str]:
    return remaining_of(ctx.deployment)


def remaining_of(engine: Deployment) -> list[str]:
    return [name for name, _ in phases_of(engine) if name not in engine.completed]


async def conclude(store: RecordStore, lease: Lease, holder: Holder, ctx: Context) -> None:
    engine = await finish(ctx)
    state = OUTCOME_STATES[engine.outcome]
    note = ""
    cancelled = engine.failure is not None and engine.failure.message == CANCELLED
    if cancelled and state in ("not_switched", "rolled_back"):
        state = "cancelled"  # production is back as it was, because someone asked
        asked = store.redis.get(CANCEL_KEY.format(id=engine.id))
        note = asked.decode() if isinstance(asked, bytes) else ""
    store.advance(engine.id, state, engine=engine, note=note)
    lease.release(holder)
    store.redis.delete(
        HEARTBEAT_KEY.format(id=engine.id),
        RECOVERING_KEY.format(id=engine.id),
        CANCEL_KEY.format(id=engine.id),
    )


def recovery_job(deployment_id: str, why: str) -> None:
    """RQ's entry point for a deployment whose worker died (handed over by a sweeper)."""
    connection = connect()
    try:
        with working_on(deployment_id):
            asyncio.run(recover_deployment(connection, deployment_id, why))
    finally:
        connection.close()


async def recover_deployment(connection: redis.Redis, deployment_id: str, why: str) -> None:
    store = RecordStore(connection)
    record = store.load(deployment_id)
    if record is None or record.final or record.deployment is None:
        return
    ctx = engine_context(connection, record, None)  # the way back is never cancelled
    async with heartbeat(connection, deployment_id):
        engine = await take_over(ctx, why)
    found = f"{why}; production is {engine.outcome.replace('_', ' ')}"
    store.advance(deployment_id, "recovered", note=found, engine=engine)
    Lease(connection, record.app, record.env).release(lease_holder(record))
    store.redis.delete(HEARTBEAT_KEY.format(id=deployment_id))
    audit_own(connection, "recover", record, found)


def audit_own(connection: redis.Redis, action: str, record: DeploymentRecord, why: str) -> None:
    """What Greenlight did on its own (a timeout, a recovery), in the audit trail."""
    audit(
        connection,
        AuditEntry(
            who="greenlight",
            action=action,
            target=f"{record.app}/{record.env}",
            deployment=record.id,
            result="accepted",
            reason=why,
        ),
    )


def cancel_flag(connection: redis.Redis, deployment_id: str) -> CancelCheck:
    """What the engine polls between steps and inside every wait (the stability window
    included): a key in Redis that `jobs.api.cancel` sets."""
    key = CANCEL_KEY.format(id=deployment_id)

    async def requested() -> bool:
        return bool(connection.exists(key))

    return requested


def lease_holder(record: DeploymentRecord) -> Holder:
    assert record.deployment is not None
    return Holder(
        token=record.deployment.token,
        deployment=record.id,
        who=record.requested_by,
        since=record.created_at,
    )
