"""Noticing a deployment whose worker died, within seconds rather than at RQ's
ten-minute maintenance: every running phase job keeps a heartbeat key alive; a sweeper
in every `greenlight worker` looks at the deployments that hold a lease, and one whose
current job has started but whose heartbeat is gone is handed to a recovery job.

A slow but healthy deployment keeps beating (a 300 s stability window included), and a
job still waiting in the queue is not stalled: only a started job without a heartbeat is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import redis
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from deploy.pipeline import phases_of
from jobs.lease import LEASE_KEY, Holder
from jobs.queue import connect, job_id, queue
from jobs.records import DeploymentRecord, RecordStore

HEARTBEAT_KEY = "greenlight:heartbeat:{id}"
RECOVERING_KEY = "greenlight:recovering:{id}"
BEAT_EVERY = 3.0
BEAT_TTL = 15.0
SWEEP_EVERY = 5.0
WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


@contextlib.asynccontextmanager
async def heartbeat(connection: redis.Redis, deployment_id: str) -> AsyncIterator[None]:
    """Beat while the body runs; the key lapses BEAT_TTL after the beating stops."""
    key = HEARTBEAT_KEY.format(id=deployment_id)

    async def beat() -> None:
        while True:
            with contextlib.suppress(redis.RedisError):  # Redis restarting: beat again soon
                connection.set(key, "1", px=int(BEAT_TTL * 1000))
            await asyncio.sleep(BEAT_EVERY)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def stalled(connection: redis.Redis) -> list[tuple[DeploymentRecord, str]]:
    """(record, why) for each leased deployment whose started job has no heartbeat."""
    store = RecordStore(connection)
    found = []
    for key in connection.scan_iter(match=LEASE_KEY.format(app="*", env="*")):
        raw = connection.get(key)
        if raw is None:
            continue
        holder = Holder.model_validate_json(raw)
        record = store.load(holder.deployment)
        if record is None or record.state != "running" or record.phase is None:
            continue
        if connection.exists(HEARTBEAT_KEY.format(id=record.id)):
            continue
        if any(job_status(connection, record.id, phase) in WAITING for phase in carriers(record)):
            continue  # waiting for a free worker is not a stall
        found.append((record, f"the worker running its {record.phase} job stopped beating"))
    return found


def carriers(record: DeploymentRecord) -> list[str]:
    """The phases whose job may carry a running deployment on: the one its record names,
    and the next one. A phase job queues its successor as it ends, and the record names
    the successor only once that job starts; meanwhile the heartbeat lapses, and the wait
    can be long (every worker busy, or the only one in a warm shutdown and restarting)."""
    assert record.phase is not None
    phases = [record.phase]
    if record.deployment is not None:
        done = record.deployment.completed
        upcoming = [name for name, _ in phases_of(record.deployment) if name not in done]
        phases += [name for name in upcoming[:1] if name != record.phase]
    return phases


def job_status(connection: redis.Redis, deployment_id: str, phase: str) -> JobStatus | None:
    try:
        job = Job.fetch(job_id(deployment_id, phase), connection=connection)
        return job.get_status(refresh=True)
    except Exception:  # the job is gone altogether
        return None


def sweep(connection: redis.Redis) -> list[str]:
    """Hand every stalled deployment to one recovery job (claimed once across sweepers)."""
    handed = []
    for record, why in stalled(connection):
        deployment_id = record.id
        claim = RECOVERING_KEY.format(id=deployment_id)
        if not connection.set(claim, why, nx=True, ex=3600):
            continue
        if record.phase is not None:
            forget_started(connection, job_id(deployment_id, record.phase))
        queue(connection).enqueue_call(
            "jobs.work.recovery_job",
            args=(deployment_id, why),
            timeout=1800,
            job_id=job_id(deployment_id, "recovery"),
            result_ttl=3600,
            description=f"{deployment_id}: recovery",
        )
        handed.append(deployment_id)
    return handed


def forget_started(connection: redis.Redis, dead_job: str) -> None:
    """The dead job would sit in RQ's started registry until maintenance: take it out."""
    registry = StartedJobRegistry(queue=queue(connection))
    for entry in registry.get_job_ids():
        if entry == dead_job or entry.startswith(f"{dead_job}:"):
            connection.zrem(registry.key, entry)
    with contextlib.suppress(Exception):
        Job.fetch(dead_job, connection=connection).delete()


def start_sweeper(url: str | None) -> threading.Thread:
    """The sweeper thread every worker runs beside RQ's own loop."""

    def loop() -> None:
        connection = connect(url)
        while True:
            with contextlib.suppress(redis.RedisError):
                sweep(connection)
            threading.Event().wait(SWEEP_EVERY)

    thread = threading.Thread(target=loop, name="greenlight-sweeper", daemon=True)
    thread.start()
    return thread
