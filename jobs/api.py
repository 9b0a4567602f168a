"""The one way the bot and the command line start and steer deployments on the workers.

Every call validates with the engine's own rules, returns a typed result a person can
act on (accepted with the deployment's id, or refused with the reason), and writes an
audit entry, accepted or refused. Calls that change something take the (app,
environment) lease first, so the command line, the bot and workers on several machines
never run two deployments of one environment at once.
"""

from __future__ import annotations

from typing import Literal

import redis
from pydantic import BaseModel

from deploy.deployment import Deployment
from deploy.errors import Refused as EngineRefused
from deploy.phases.prepare import new_deployment
from deploy.pipeline import new_rollback, phases_of
from deploy.spec import Environment, Spec, SpecError, choose_app
from deploy.status import EnvironmentStatus, collect_status
from jobs.lease import Lease, LeaseHeld, Sticky
from jobs.queue import TIMEOUT_SLACK, enqueue_phase
from jobs.records import WORDS, DeploymentRecord, Origin, RecordStore, State
from jobs.streams import AuditEntry, audit
from jobs.work import CANCEL_KEY, drop_expiry, lease_holder, resume, schedule_expiry

MAX_REASON = 200
LIVE_LOOKBACK = 100  # requests searched for the last release recorded live


class Answer(BaseModel):
    result: Literal["accepted", "refused"]
    deployment: str | None = None
    state: State | None = None
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.result == "accepted"


class Target(BaseModel):
    """An app's environment and the policy the bot follows for it."""

    app: str
    env: str
    default: bool
    hosts: list[str]
    public_url: str
    approval: Literal["required", "none"]
    promote: Literal["auto", "manual"]
    promote_timeout: float
    locked: Sticky | None = None
    deploying: str | None = None


class TargetStatus(BaseModel):
    """What the hosts say (read over SSH) and what Greenlight is doing there."""

    app: str
    env: str
    hosts: EnvironmentStatus
    current: DeploymentRecord | None = None
    locked: Sticky | None = None


class TargetSummary(BaseModel):
    """What Redis alone knows of (app, environment), at once: no host is asked."""

    app: str
    env: str
    current: DeploymentRecord | None = None
    locked: Sticky | None = None
    last_live: DeploymentRecord | None = None


class Refusal(Exception):
    """A call's input or the environment's state refuses it; the text says why."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(reason)
        self.target = target
        self.reason = reason


def request_deployment(
    connection: redis.Redis,
    specs: dict[str, Spec],
    *,
    app: str | None,
    env: str | None,
    version: str,
    who: str,
    approved_by: str | None = None,
    skip_tests: bool = False,
    tag: str | None = None,
    origin: Origin | None = None,
) -> Answer:
    """Ask for `version` on (app, environment). Where the environment's policy says
    `approval: required` and nobody else approved it already, it waits for `approve`
    (at most `approval_timeout`); otherwise it is queued at once. `tag` is the image
    tag when it is not the version's (a CI build); `origin` says which release or CI
    run asked, when a webhook did."""
    try:
        spec, environment = _where(specs, app, env)
        engine = new_deployment(spec, environment.name, version, who, tag=tag)
        if approved_by is not None and approved_by == who:
            raise EngineRefused(f"{who} asked for it; someone else has to approve it")
    except (SpecError, EngineRefused, Refusal) as exc:
        return _refuse(connection, who, "deploy", _target(app, env, exc), str(exc))
    engine.skip_tests = skip_tests
    waits = environment.approval == "required" and approved_by is None
    return _start(connection, specs, spec, environment, engine, who, approved_by, waits, origin)


def rollback(
    connection: redis.Redis,
    specs: dict[str, Spec],
    *,
    app: str | None,
    env: str | None,
    who: str,
    to: str | None = None,
    deployment: str | None = None,
) -> Answer:
    """Take (app, environment) back to the last good release before the live one, or
    to `to`. An emergency path: no approval. Where to go is chosen by the first job,
    from what the hosts say; a refusal there ends the request refused, with the reason.
    With `deployment` (a button on that deployment's message), only while it is still
    the release that went live last there."""
    try:
        spec, environment = _where(specs, app, env)
        if deployment is not None:
            _still_live(connection, spec.app, environment.name, deployment)
        engine = new_rollback(spec, environment.name, to, who)
    except (SpecError, EngineRefused, Refusal) as exc:
        return _refuse(connection, who, "rollback", _target(app, env, exc), str(exc))
    return _start(connection, specs, spec, environment, engine, who, None, False)


def approve(connection: redis.Redis, deployment_id: str, who: str) -> Answer:
    """Someone other than the requester says yes: the deployment is queued."""
    try:
        record = _awaiting(connection, deployment_id, "awaiting_approval", "approve")
        if record.requested_by == who:
            raise Refusal(deployment_id, f"{who} asked for it; someone else has to approve it")
    except Refusal as exc:
        return _refuse(connection, who, "approve", exc.target, exc.reason)
    assert record.deployment is not None
    drop_expiry(connection, record.id, "awaiting_approval")
    return _queue(connection, record, record.deployment, who, action="approve")


def update_origin(connection: redis.Redis, deployment_id: str, origin: Origin, who: str) -> Answer:
    """The release behind a waiting request changed (its notes, its name): the request
    carries the new text. Only while it awaits approval; what runs keeps what it had."""
    try:
        record = _awaiting(connection, deployment_id, "awaiting_approval", "update")
    except Refusal as exc:
        return _refuse(connection, who, "update", exc.target, exc.reason)
    RecordStore(connection).set_origin(record.id, origin)
    return _accept(connection, who, "update", _at(record), record.id, record.state)


def reject(connection: redis.Redis, deployment_id: str, who: str, reason: str = "") -> Answer:
    """No: the request ends rejected; nothing was touched."""
    try:
        record = _awaiting(connection, deployment_id, "awaiting_approval", "reject")
    except Refusal as exc:
        return _refuse(connection, who, "reject", exc.target, exc.reason)
    drop_expiry(connection, record.id, "awaiting_approval")
    RecordStore(connection).advance(record.id, "rejected", by=who, note=reason[:MAX_REASON])
    Lease(connection, record.app, record.env).release(lease_holder(record))
    return _accept(connection, who, "reject", _at(record), record.id, "rejected", reason)


def promote(
    connection: redis.Redis,
    specs: dict[str, Spec],
    *,
    app: str | None,
    env: str | None,
    who: str,
    deployment: str | None = None,
) -> Answer:
    """Let a deployment held after smoke (`promote: manual`) go on to the switch. With
    `deployment`, only that one."""
    try:
        record = _current(connection, specs, app, env, "promote", deployment)
        if record.state != "awaiting_promotion":
            raise Refusal(record.id, f"{record.id} {WORDS[record.state]}; it is not held")
    except Refusal as exc:
        return _refuse(connection, who, "promote", exc.target, exc.reason)
    resume(connection, record, who)
    return _accept(connection, who, "promote", _at(record), record.id, "running")


def cancel(
    connection: redis.Redis,
    specs: dict[str, Spec],
    *,
    app: str | None,
    env: str | None,
    who: str,
    deployment: str | None = None,
    reason: str = "",
) -> Answer:
    """Stop what is happening on (app, environment). A request awaiting approval just
    ends; a deployment held for promotion, queued or running unwinds in the engine:
    before the switch it tears the new colour down, after it it rolls back. With
    `deployment`, only that one."""
    try:
        record = _current(connection, specs, app, env, "cancel", deployment)
    except Refusal as exc:
        return _refuse(connection, who, "cancel", exc.target, exc.reason)
    reason = " ".join(reason.split())[:MAX_REASON]
    why = f"cancelled by {who}" + (f": {reason}" if reason else "")
    if record.state == "awaiting_approval":
        drop_expiry(connection, record.id, "awaiting_approval")
        RecordStore(connection).advance(record.id, "cancelled", by=who, note=reason)
        Lease(connection, record.app, record.env).release(lease_holder(record))
        return _accept(connection, who, "cancel", _at(record), record.id, "cancelled")
    if record.state == "awaiting_promotion":
        resume(connection, record, who, cancel=why)
    else:  # the engine polls it between steps and inside every wait
        connection.set(CANCEL_KEY.format(id=record.id), why, ex=86_400)
    return _accept(connection, who, "cancel", _at(record), record.id, record.state, reason)


def lock(
    connection: redis.Redis,
    specs: dict[str, Spec],
    *,
    app: str | None,
    env: str | None,
    who: str,
    reason: str,
) -> Answer:
    """A sticky lock: no deployment or rollback starts on (app, environment) until
    someone unlocks it. What is running already goes on."""
    try:
        spec, environment = _where(specs, app, env)
        where = f"{spec.app}/{environment.name}"
        reason = " ".join(reason.split())
        if not reason:
            raise Refusal(where, "say why: a lock needs a reason others can read")
        if len(reason) > MAX_REASON:
            raise Refusal(where, f"the reason is longer than {MAX_REASON} characters")
        lease = Lease(connection, spec.app, environment.name)
        current = lease.sticky()
        if current is not None:
            raise Refusal(where, f"{where} is already locked by {current.who}: {current.reason}")
    except (SpecError, Refusal) as exc:
        return _refuse(connection, who, "lock", _target(app, env, exc), str(exc))
    lease.lock(Sticky(who=who, reason=reason))
    return _accept(connection, who, "lock", where, reason=reason)


def unlock(
    connection: redis.Redis,
    specs: dict[str, Spec],
    *,
    app: str | None,
    env: str | None,
    who: str,
    force: bool = False,
) -> Answer:
    """Lift a sticky lock. Lifting someone else's takes `force`, and says so in the audit."""
    try:
        spec, environment = _where(specs, app, env)
        where = f"{spec.app}/{environment.name}"
        lease = Lease(connection, spec.app, environment.name)
        current = lease.sticky()
        if current is None:
            raise Refusal(where, f"{where} is not locked")
        if current.who != who and not force:
            raise Refusal(
                where,
                f"{where} is locked by {current.who} since {current.since:%Y-%m-%d %H:%M} UTC: "
                f"{current.reason}; lifting someone else's lock needs force",
            )
    except (SpecError, Refusal) as exc:
        return _refuse(connection, who, "unlock", _target(app, env, exc), str(exc))
    lease.unlock()
    forced = f"forced: lifted {current.who}'s lock ({current.reason})" if current.who != who else ""
    return _accept(connection, who, "unlock", where, reason=forced)


async def status(
    connection: redis.Redis, specs: dict[str, Spec], *, app: str | None, env: str | None
) -> TargetStatus:
    """The hosts as they are (SSH) and the request holding the environment, if any.
    Raises SpecError for an unknown app or environment."""
    spec, environment = _where(specs, app, env)
    lease = Lease(connection, spec.app, environment.name)
    holder = lease.holder()
    return TargetStatus(
        app=spec.app,
        env=environment.name,
        hosts=await collect_status(spec, environment.name),
        current=RecordStore(connection).load(holder.deployment) if holder else None,
        locked=lease.sticky(),
    )


def summary(
    connection: redis.Redis, specs: dict[str, Spec], *, app: str | None, env: str | None
) -> TargetSummary:
    """The request holding (app, environment), its lock and the last release recorded
    live, from Redis only. Raises SpecError for an unknown app or environment."""
    spec, environment = _where(specs, app, env)
    lease = Lease(connection, spec.app, environment.name)
    holder = lease.holder()
    store = RecordStore(connection)
    recent = store.recent(spec.app, environment.name, LIVE_LOOKBACK)
    current = store.load(holder.deployment) if holder else None
    return TargetSummary(
        app=spec.app,
        env=environment.name,
        current=current if current is not None and not current.final else None,
        locked=lease.sticky(),
        last_live=next((r for r in recent if r.state == "live"), None),
    )


async def hosts(
    specs: dict[str, Spec], *, app: str | None, env: str | None, timeout: float | None = None
) -> EnvironmentStatus:
    """What each host of (app, environment) says over SSH; a host silent for `timeout`
    seconds is reported unreachable. Raises SpecError for an unknown app or environment."""
    spec, environment = _where(specs, app, env)
    return await collect_status(spec, environment.name, host_timeout=timeout)


def history(
    connection: redis.Redis,
    specs: dict[str, Spec],
    *,
    app: str | None,
    env: str | None,
    last: int = 20,
) -> list[DeploymentRecord]:
    """The last requests to (app, environment), newest first, refused ones included."""
    spec, environment = _where(specs, app, env)
    return RecordStore(connection).recent(spec.app, environment.name, min(max(1, last), 1000))


def targets(connection: redis.Redis, specs: dict[str, Spec]) -> list[Target]:
    """Every app's environments, with their policy, lock and current request."""
    found = []
    for spec in specs.values():
        for environment in spec.environments.values():
            lease = Lease(connection, spec.app, environment.name)
            holder = lease.holder()
            default = spec.environment(None).name if _has_default(spec) else None
            found.append(
                Target(
                    app=spec.app,
                    env=environment.name,
                    default=environment.name == default,
                    hosts=[h.name for h in environment.hosts],
                    public_url=environment.public_url,
                    approval=environment.approval,
                    promote=environment.promote,
                    promote_timeout=environment.promote_timeout,
                    locked=lease.sticky(),
                    deploying=holder.deployment if holder else None,
                )
            )
    return found


# -- the shared steps ---------------------------------------------------------------


def _start(
    connection: redis.Redis,
    specs: dict[str, Spec],
    spec: Spec,
    environment: Environment,
    engine: Deployment,
    who: str,
    approved_by: str | None,
    waits: bool,
    origin: Origin | None = None,
) -> Answer:
    """Record the request under the lease, then wait for approval or queue it."""
    action = engine.kind
    where = f"{spec.app}/{environment.name}"
    if len(specs) > 1:  # ids are unique across apps; with one app the app is left out
        engine.id = f"{spec.app}-{engine.id}"
    engine.app = spec.app
    engine.spec_hash = spec.fingerprint()  # a worker reading another spec refuses it
    record = DeploymentRecord(
        id=engine.id,
        kind=engine.kind,
        app=spec.app,
        env=environment.name,
        version=engine.version,
        requested_by=who,
        approved_by=approved_by,
        deployment=engine,
        origin=origin,
    )
    lease = Lease(connection, spec.app, environment.name)
    first_wait = environment.approval_timeout if waits else _budget(engine)
    try:
        lease.acquire(lease_holder(record), ttl=first_wait + TIMEOUT_SLACK)
    except LeaseHeld as exc:
        return _refuse(connection, who, action, where, str(exc))
    store = RecordStore(connection)
    try:
        store.create(record)
    except ValueError:  # the same request twice within one second
        lease.release(lease_holder(record))
        return _refuse(connection, who, action, where, f"{record.id} was just requested; try again")
    if waits:
        store.advance(
            record.id,
            "awaiting_approval",
            by=who,
            note=f"someone other than {who} approves within {environment.approval_timeout:g} s",
        )
        schedule_expiry(connection, record.id, "awaiting_approval", environment.approval_timeout)
        return _accept(connection, who, action, where, record.id, "awaiting_approval")
    return _queue(connection, record, engine, approved_by or who, action=action)


def _queue(
    connection: redis.Redis,
    record: DeploymentRecord,
    engine: Deployment,
    who: str,
    *,
    action: str,
) -> Answer:
    """Enqueue the first phase; if Redis refuses, nothing runs and the lease is freed."""
    store = RecordStore(connection)
    holder = lease_holder(record)
    first = phases_of(engine)[0][0]
    try:
        Lease(connection, record.app, record.env).renew(holder, _budget(engine) + TIMEOUT_SLACK)
        enqueue_phase(connection, record.id, first, _budget(engine))
    except redis.RedisError as exc:
        store.advance(record.id, "refused", note=f"could not queue it: {exc}")
        Lease(connection, record.app, record.env).release(holder)
        return _refuse(connection, who, action, record.id, f"could not queue it: {exc}")
    store.advance(record.id, "queued", by=who)
    return _accept(connection, who, action, _at(record), record.id, "queued")


def _budget(engine: Deployment) -> float:
    """The first phase's budget; later ones renew the lease from the planned budgets."""
    return engine.budgets.get(phases_of(engine)[0][0], 600.0)


def _where(specs: dict[str, Spec], app: str | None, env: str | None) -> tuple[Spec, Environment]:
    spec = choose_app(specs, app)
    return spec, spec.environment(env)


def _current(
    connection: redis.Redis,
    specs: dict[str, Spec],
    app: str | None,
    env: str | None,
    action: str,
    expected: str | None = None,
) -> DeploymentRecord:
    """The request holding (app, environment); Refusal when there is none, or when it
    is not the `expected` one."""
    try:
        spec, environment = _where(specs, app, env)
    except SpecError as exc:
        raise Refusal(_target(app, env, exc), str(exc)) from None
    where = f"{spec.app}/{environment.name}"
    holder = Lease(connection, spec.app, environment.name).holder()
    record = RecordStore(connection).load(holder.deployment) if holder else None
    if expected is not None and (record is None or record.id != expected):
        raise Refusal(expected, f"cannot {action} {expected}: it is no longer in progress")
    if record is None or record.final:
        raise Refusal(where, f"nothing to {action} on {where}: no deployment is in progress")
    return record


# Requests after which the release live before them still is (nothing switched, or
# switched back): a newer one of these leaves an older deployment's Roll back valid.
LEFT_AS_IT_WAS: frozenset[State] = frozenset(
    {"rejected", "cancelled", "refused", "not_switched", "rolled_back"}
)


def _still_live(connection: redis.Redis, app: str, env: str, expected: str) -> None:
    """Refusal unless `expected` went live on (app, env) and nothing changed it since."""
    where = f"{app}/{env}"
    for record in RecordStore(connection).recent(app, env, 1000):
        if record.id == expected:
            if record.state != "live":
                raise Refusal(expected, f"cannot roll back {expected}: it {WORDS[record.state]}")
            return
        if record.state not in LEFT_AS_IT_WAS:
            raise Refusal(
                expected,
                f"cannot roll back {expected}: {record.id} came after it on {where}",
            )
    raise Refusal(expected, f"there is no deployment {expected!r} on {where}")


def _awaiting(
    connection: redis.Redis, deployment_id: str, state: State, action: str
) -> DeploymentRecord:
    record = RecordStore(connection).load(deployment_id)
    if record is None:
        raise Refusal(deployment_id, f"there is no deployment {deployment_id!r}")
    if record.state != state:
        raise Refusal(deployment_id, f"cannot {action} {deployment_id}: it {WORDS[record.state]}")
    return record


def _target(app: str | None, env: str | None, exc: Exception) -> str:
    if isinstance(exc, Refusal):
        return exc.target
    return f"{app or '?'}/{env or '?'}"


def _accept(
    connection: redis.Redis,
    who: str,
    action: str,
    where: str,
    deployment: str | None = None,
    state: State | None = None,
    reason: str = "",
) -> Answer:
    """Audit an accepted call on `where` (app/env), and on a deployment if any."""
    audit(
        connection,
        AuditEntry(
            who=who,
            action=action,
            target=where,
            deployment=deployment,
            result="accepted",
            reason=reason,
        ),
    )
    return Answer(result="accepted", deployment=deployment, state=state)


def _at(record: DeploymentRecord) -> str:
    return f"{record.app}/{record.env}"


def _refuse(connection: redis.Redis, who: str, action: str, target: str, reason: str) -> Answer:
    audit(
        connection,
        AuditEntry(who=who, action=action, target=target, result="refused", reason=reason),
    )
    return Answer(result="refused", reason=reason)


def _has_default(spec: Spec) -> bool:
    return spec.default_environment is not None or len(spec.environments) == 1
