"""The phase job: load the deployment from Redis, run its next phase with the engine,
save what it learned, and enqueue the next phase, or settle and finish.

Nothing is trusted from another job's process memory: the engine's record (cursor,
plan, host tokens, epochs) travels in Redis between jobs, and each job opens its own
SSH connections.
"""

from __future__ import annotations

import asyncio
import os

import redis

from deploy.context import Context
from deploy.errors import CANCELLED, PhaseFailed, Refused
from deploy.pipeline import DEPLOY_PHASES, CancelCheck, begin, finish, next_phase, settle
from deploy.spec import choose_app, load_specs
from deploy.takeover import take_over
from jobs.lease import Holder, Lease
from jobs.queue import TIMEOUT_SLACK, connect, enqueue_phase
from jobs.records import DeploymentRecord, RecordStore, State
from jobs.streams import AuditEntry, RedisSink, audit
from jobs.sweeper import HEARTBEAT_KEY, RECOVERING_KEY, heartbeat

PHASES = DEPLOY_PHASES
CANCEL_KEY = "greenlight:cancel:{id}"
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
        asyncio.run(advance(connection, deployment_id))
    finally:
        connection.close()


async def advance(connection: redis.Redis, deployment_id: str) -> None:
    store = RecordStore(connection)
    record = store.load(deployment_id)
    if record is None or record.final or record.deployment is None:
        return  # a job for a deployment that ended (or never was): nothing to do
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
            await next_phase(ctx, PHASES)
    except (Refused, PhaseFailed) as exc:
        await settle(ctx, exc)
        await conclude(store, lease, holder, ctx)
        return
    left = remaining(ctx)
    if not left:
        await conclude(store, lease, holder, ctx)
        return
    await ctx.close()
    store.save_engine(deployment_id, ctx.deployment)
    enqueue_phase(connection, deployment_id, left[0], ctx.deployment.budgets.get(left[0], 600))


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
        RedisSink(connection),
        registry_password=os.environ.get("GREENLIGHT_REGISTRY_PASSWORD") or None,
        cancel_requested=cancel,
    )


def remaining(ctx: Context) -> list[str]:
    return [name for name, _ in PHASES if name not in ctx.deployment.completed]


async def conclude(store: RecordStore, lease: Lease, holder: Holder, ctx: Context) -> None:
    engine = await finish(ctx)
    state = OUTCOME_STATES[engine.outcome]
    cancelled = engine.failure is not None and engine.failure.message == CANCELLED
    if cancelled and state in ("not_switched", "rolled_back"):
        state = "cancelled"  # production is back as it was, because someone asked
    store.advance(engine.id, state, engine=engine)
    lease.release(holder)
    store.redis.delete(HEARTBEAT_KEY.format(id=engine.id), RECOVERING_KEY.format(id=engine.id))


def recovery_job(deployment_id: str, why: str) -> None:
    """RQ's entry point for a deployment whose worker died (handed over by a sweeper)."""
    connection = connect()
    try:
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
    audit(
        connection,
        AuditEntry(
            who="greenlight",
            action="recover",
            target=deployment_id,
            result="accepted",
            reason=found,
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
