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
from jobs.work import PHASES, lease_holder


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
        skip_tests=skip_tests,
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


def _refused(connection: redis.Redis, who: str, target: str, reason: str) -> Answer:
    audit(
        connection,
        AuditEntry(who=who, action="deploy", target=target, result="refused", reason=reason),
    )
    return Answer(result="refused", reason=reason)
