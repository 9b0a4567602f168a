"""Two Redis Streams: every event of every deployment (the bot reads it with a consumer
group, so a restart loses nothing), and the audit trail (append-only, never trimmed).

Entries are one JSON field each, readable from any id. Events are the engine's typed
events; the jobs layer's own moments (requested, approved, queued...) are events too.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

import redis
from pydantic import BaseModel, Field

from deploy.events import EVENTS, Event, Kind
from deploy.state import now
from jobs.metrics import EventMetrics

EVENTS_KEY = "greenlight:events"
AUDIT_KEY = "greenlight:audit"
# The event stream is bounded (about a million events); the audit stream never is.
EVENTS_KEPT = 1_000_000
log = logging.getLogger("greenlight.events")


class RedisSink:
    """The engine's EventSink for workers: each event appended to the event stream
    (and so logged) and measured (`jobs.metrics`)."""

    def __init__(self, connection: redis.Redis, *, app: str = "", env: str = "") -> None:
        self.redis = connection
        self.metrics = EventMetrics(app, env)

    async def emit(self, event: Event) -> None:
        append_event(self.redis, event)
        self.metrics.observe(event)


def append_event(connection: redis.Redis, event: Event) -> str:
    """Append to the stream, and log it: one line per event, naming its deployment, in
    the process that appended it (a worker for the engine's, whoever moved a request
    for the request's own)."""
    entry = connection.xadd(
        EVENTS_KEY,
        {"event": EVENTS.dump_json(event)},
        maxlen=EVENTS_KEPT,
        approximate=True,
    )
    log_event(event)
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def log_event(event: Event) -> None:
    # A remote command's output lines are in the stream and in failure reports; the
    # log has them at DEBUG (GREENLIGHT_LOG_LEVEL=debug).
    level = logging.DEBUG if event.kind == Kind.output else logging.INFO
    if event.kind in (Kind.warning, Kind.phase_failed):
        level = logging.WARNING
    log.log(
        level,
        "%s",
        event.message or event.kind.value,
        extra={
            "deployment": event.deployment,
            "event": event.kind.value,
            "phase": event.phase,
            "host": event.host,
        },
    )


def last_event_id(connection: redis.Redis) -> str:
    """Where the stream ends now: read after it to see only what comes next."""
    last: Any = connection.xrevrange(EVENTS_KEY, count=1)
    return _text(last[0][0]) if last else "0"


def read_events(
    connection: redis.Redis, after: str = "0", count: int = 100, block_ms: int | None = None
) -> list[tuple[str, Event]]:
    """Events after the stream id `after` ("0": from the start), oldest first."""
    answer: Any = connection.xread({EVENTS_KEY: after}, count=count, block=block_ms)
    return [
        (_text(entry_id), EVENTS.validate_json(fields[b"event"]))
        for _, entries in answer or []
        for entry_id, fields in entries
    ]


class AuditEntry(BaseModel):
    who: str
    action: str  # request, approve, reject, cancel, promote, rollback, lock, unlock...
    target: str  # app/env, or a deployment id when that is all the caller named
    deployment: str | None = None
    # ignored: a webhook delivery Greenlight does not act on (a draft, another branch).
    result: Literal["accepted", "refused", "ignored"]
    reason: str = ""
    at: datetime = Field(default_factory=now)


def audit(connection: redis.Redis, entry: AuditEntry) -> str:
    """Append to the audit trail; it is never trimmed."""
    return _text(connection.xadd(AUDIT_KEY, {"entry": entry.model_dump_json()}))


def read_audit(connection: redis.Redis, last: int = 50) -> list[AuditEntry]:
    """The last `last` audit entries, oldest first."""
    entries: Any = connection.xrevrange(AUDIT_KEY, count=last)
    return [AuditEntry.model_validate_json(fields[b"entry"]) for _, fields in reversed(entries)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
