"""The one way the bot and the command line start deployments through the workers.

Every call validates with the engine's own rules, returns a typed result a person can
act on, and writes an audit entry, accepted or refused.
"""

from __future__ import annotations

from typing import Literal

import redis
from pydantic import BaseModel

from deploy.errors import Refused as EngineRefused
from deploy.phases.prepare import new_deployment
from deploy.spec import Spec, SpecError, choose_app
from jobs.lease import Lease, LeaseHeld
from jobs.queue import TIMEOUT_SLACK, enqueue_phase
from jobs.records import DeploymentRecord, RecordStore
from jobs.streams import AuditEntry, audit
from jobs.work import CANCEL_KEY, PHASES, lease_holder


class Answer(BaseModel):
    result: Literal["accepted", "refused"]
    deployment: str | None = None
    reason: str = ""


def request_deployment(
    connection: redis.Redis,
    specs: dict[str, Spec],
    *,
    app: str | None,
    env: str | None,
    version: str,
    who: str,
    skip_tests: bool = False,
) -> Answer:
    """Queue a deployment (no approval step here: that is the bot's, with the policy)."""
    target = f"{app or '?'}/{env or '?'}"
    try:
        spec = choose_app(specs, app)
        engine = new_deployment(spec, env, version, who)
    except (SpecError, EngineRefused) as exc:
        return _refused(connection, who, target, str(exc))
    target = f"{spec.app}/{engine.env}"
    if len(specs) > 1:  # ids are unique across apps; with one app the app is left out
        engine.id = f"{spec.app}-{engine.id}"
    engine.app, engine.skip_tests = spec.app, skip_tests
    record = DeploymentRecord(
        id=engine.id,
        app=spec.app,
        env=engine.env,
        version=engine.version,
        requested_by=who,
        deployment=engine,
    )
    lease = Lease(connection, spec.app, engine.env)
    try:
        lease.acquire(lease_holder(record), ttl=600 + TIMEOUT_SLACK)
    except LeaseHeld as exc:
        return _refused(connection, who, target, str(exc))
    store = RecordStore(connection)
    try:
        store.create(record)
    except ValueError:  # the same version asked twice within one second
        lease.release(lease_holder(record))
        return _refused(connection, who, target, f"{record.id} was just requested; try again")
    try:
        enqueue_phase(connection, record.id, PHASES[0][0], 600)
    except Exception as exc:  # nothing runs: the request ends refused, the lease is freed
        store.advance(record.id, "refused", note=str(exc))
        lease.release(lease_holder(record))
        return _refused(connection, who, target, f"could not queue it: {exc}")
    store.advance(record.id, "queued", by=who)
    audit(connection, AuditEntry(who=who, action="deploy", target=target, result="accepted"))
    return Answer(result="accepted", deployment=record.id)


def cancel(
    connection: redis.Redis, specs: dict[str, Spec], *, app: str | None, env: str | None, who: str
) -> Answer:
    """Ask the deployment running on (app, environment) to stop: before the switch it
    tears the new colour down, after it it rolls back. Cooperative: the engine polls."""
    target = f"{app or '?'}/{env or '?'}"
    try:
        spec = choose_app(specs, app)
        environment = spec.environment(env)
    except SpecError as exc:
        return _refused(connection, who, target, str(exc), action="cancel")
    target = f"{spec.app}/{environment.name}"
    holder = Lease(connection, spec.app, environment.name).holder()
    record = RecordStore(connection).load(holder.deployment) if holder else None
    if record is None or record.final:
        return _refused(connection, who, target, f"nothing is deploying {target}", action="cancel")
    connection.set(CANCEL_KEY.format(id=record.id), who, ex=86_400)
    audit(
        connection,
        AuditEntry(who=who, action="cancel", target=record.id, result="accepted"),
    )
    return Answer(result="accepted", deployment=record.id)


def _refused(
    connection: redis.Redis, who: str, target: str, reason: str, action: str = "deploy"
) -> Answer:
    audit(
        connection,
        AuditEntry(who=who, action=action, target=target, result="refused", reason=reason),
    )
    return Answer(result="refused", reason=reason)
