"""A deployment request's record in Redis: who asked, who approved, where it stands.

The engine's own `Deployment` (phases, hosts, failure report) travels inside it; this
record adds what the engine does not know: the request's life before and around the
phases. Every change of state goes through `advance`, which refuses a transition the
life of a request does not have, so two processes can never walk it backwards.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

import redis
from pydantic import BaseModel, Field

from deploy.deployment import Deployment
from deploy.events import RequestChanged
from deploy.pipeline import UNPLANNED
from deploy.state import now
from jobs import metrics
from jobs.streams import append_event

State = Literal[
    "requested",
    "awaiting_approval",
    "queued",
    "running",
    "awaiting_promotion",
    "live",
    "rolled_back",
    "not_switched",
    "rejected",
    "cancelled",
    "recovered",
    "refused",
    "unknown",
]
FINAL: frozenset[State] = frozenset(
    {"live", "rolled_back", "not_switched", "rejected", "cancelled", "recovered", "refused"}
)
# Where each state may go next. `running` may repeat: its phase changes.
NEXT: dict[State, frozenset[State]] = {
    "requested": frozenset({"awaiting_approval", "queued", "refused"}),
    "awaiting_approval": frozenset({"queued", "rejected", "cancelled", "refused"}),
    "queued": frozenset({"running", "cancelled", "refused", "recovered"}),
    "running": frozenset(
        {
            "running",
            "awaiting_promotion",
            "live",
            "rolled_back",
            "not_switched",
            "cancelled",
            "recovered",
            "refused",
            "unknown",
        }
    ),
    "awaiting_promotion": frozenset({"running", "not_switched", "cancelled", "recovered"}),
    "unknown": frozenset({"recovered"}),
}
KEY = "greenlight:deployment:{id}"
# Every request's id, newest first, per app and environment: the bot's /history.
INDEX = "greenlight:requests:{app}:{env}"
WORDS: dict[State, str] = {
    "requested": "is requested",
    "awaiting_approval": "awaits approval",
    "queued": "is queued",
    "running": "is running",
    "awaiting_promotion": "awaits promotion",
    "live": "is live",
    "rolled_back": "was rolled back",
    "not_switched": "failed before the switch",
    "rejected": "was rejected",
    "cancelled": "was cancelled",
    "recovered": "was recovered",
    "refused": "was refused",
    "unknown": "ended in an unknown state",
}


class InvalidTransition(Exception):
    def __init__(self, record: DeploymentRecord, to: State) -> None:
        super().__init__(f"{record.id} is {record.state}; it cannot become {to}")
        self.record = record
        self.to = to


class Transition(BaseModel):
    state: State
    phase: str | None = None
    at: datetime = Field(default_factory=now)
    by: str | None = None
    note: str = ""


NOTES_KEPT = 20_000  # characters of a release's notes kept with its request


class Origin(BaseModel):
    """Where a request came from when it was not a person's command: a published
    release or a successful CI run, as the webhook told it."""

    kind: Literal["release", "ci"]
    repository: str
    ref: str  # the tag or commit GitHub's deployment is made for
    title: str = ""  # the release's name, or the workflow's
    url: str = ""  # the release's page, or the run's
    author: str = ""
    notes: str = Field("", max_length=NOTES_KEPT)
    release_id: int | None = None


class DeploymentRecord(BaseModel):
    id: str
    kind: Literal["deploy", "rollback"] = "deploy"
    app: str
    env: str
    version: str
    requested_by: str
    approved_by: str | None = None
    state: State = "requested"
    phase: str | None = None
    transitions: list[Transition] = Field(default_factory=list)
    deployment: Deployment | None = None  # the engine's record, once it is planned
    origin: Origin | None = None
    created_at: datetime = Field(default_factory=now)

    @property
    def final(self) -> bool:
        return self.state in FINAL


class RecordStore:
    """Records as JSON under one key each; `advance` changes state atomically (WATCH)."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def create(self, record: DeploymentRecord) -> DeploymentRecord:
        record.transitions = [Transition(state=record.state, by=record.requested_by)]
        if not self.redis.set(KEY.format(id=record.id), record.model_dump_json(), nx=True):
            raise ValueError(f"a deployment {record.id} already exists")
        self.redis.lpush(INDEX.format(app=record.app, env=record.env), record.id)
        self._announce(record)
        return record

    def recent(self, app: str, env: str, last: int = 20) -> list[DeploymentRecord]:
        """The last `last` requests to (app, environment), newest first."""
        ids = self.redis.lrange(INDEX.format(app=app, env=env), 0, max(1, last) - 1)
        found = (self.load(i.decode() if isinstance(i, bytes) else str(i)) for i in ids)
        return [record for record in found if record is not None]

    def load(self, deployment_id: str) -> DeploymentRecord | None:
        raw = self.redis.get(KEY.format(id=deployment_id))
        return DeploymentRecord.model_validate_json(raw) if raw else None

    def save_engine(self, deployment_id: str, engine: Deployment) -> DeploymentRecord:
        """Store what the engine learned in a phase, without changing the state."""
        return self._update(deployment_id, lambda record: _with_engine(record, engine))

    def set_origin(self, deployment_id: str, origin: Origin) -> DeploymentRecord:
        """What the webhook says of the request's release now; the state is unchanged."""

        def change(record: DeploymentRecord) -> DeploymentRecord:
            record.origin = origin
            return record

        return self._update(deployment_id, change)

    def advance(
        self,
        deployment_id: str,
        to: State,
        *,
        phase: str | None = None,
        by: str | None = None,
        note: str = "",
        engine: Deployment | None = None,
    ) -> DeploymentRecord:
        """Move the record to `to`, or InvalidTransition when its life does not allow it."""

        was: list[State] = []

        def change(record: DeploymentRecord) -> DeploymentRecord:
            if to not in NEXT.get(record.state, frozenset()):
                raise InvalidTransition(record, to)
            if (record.state, to) == ("awaiting_approval", "queued"):
                record.approved_by = by
            was[:] = [record.state]
            record.state = to
            record.phase = phase
            record.transitions.append(Transition(state=to, phase=phase, by=by, note=note))
            return _with_engine(record, engine) if engine else record

        record = self._update(deployment_id, change)
        metrics.request_ended(record.app, record.env, record.kind, to)
        if was != ["running"] or to != "running":  # a phase's start is the engine's event
            self._announce(record)
        return record

    def _announce(self, record: DeploymentRecord) -> None:
        """The request's new state, on the event stream beside the engine's events."""
        last = record.transitions[-1]
        what = record.version if record.version != UNPLANNED else "the last good release"
        text = f"{record.kind} of {what} to {record.app}/{record.env} {WORDS[record.state]}"
        if last.by and record.state != "running":
            text += f" ({last.by})"
        if last.note:
            text += f": {last.note}"
        append_event(
            self.redis,
            RequestChanged(
                deployment=record.id,
                message=text,
                phase=record.phase,
                state=record.state,
                app=record.app,
                env=record.env,
                version=record.version,
                by=last.by,
            ),
        )

    def _update(
        self, deployment_id: str, change: Callable[[DeploymentRecord], DeploymentRecord]
    ) -> DeploymentRecord:
        key = KEY.format(id=deployment_id)

        def step(raw: bytes | str | None, pipe: Any) -> DeploymentRecord:
            if raw is None:
                raise KeyError(f"no deployment {deployment_id}")
            record = change(DeploymentRecord.model_validate_json(raw))
            pipe.set(key, record.model_dump_json())
            return record

        return watched(self.redis, key, step)


T = TypeVar("T")


def watched(connection: redis.Redis, key: str, step: Callable[[bytes | str | None, Any], T]) -> T:
    """Read `key` and write what follows from it in one transaction (WATCH): `step` gets
    the value read and the pipeline, already in MULTI, to queue its writes on. It runs
    again whenever someone else wrote `key` in between."""
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                pipe.multi()
                result = step(raw, pipe)
                pipe.execute()
                return result
            except redis.WatchError:
                continue


def _with_engine(record: DeploymentRecord, engine: Deployment) -> DeploymentRecord:
    record.deployment = engine
    record.version = engine.version  # a rollback learns its version when it is planned
    return record
