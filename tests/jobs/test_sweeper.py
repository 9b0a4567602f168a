"""Which deployments the sweeper hands to recovery: a started job whose heartbeat lapsed,
never a slow but beating one, never one waiting in the queue; and only once. And a
phase job never moves on a deployment held for promotion."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from rq.job import Job, JobStatus

from deploy.deployment import Deployment
from jobs import sweeper
from jobs.lease import Lease
from jobs.queue import enqueue_phase, job_id, queue
from jobs.records import DeploymentRecord, RecordStore
from jobs.work import advance, lease_holder

ID = "production-v1.0.1-20261129_060000"


def running(r: redis.Redis, status: JobStatus) -> DeploymentRecord:
    """A deployment in its stage phase, whose stage job has `status`."""
    engine = Deployment(id=ID, env="production", version="v1.0.1", who="alice")
    record = RecordStore(r).create(
        DeploymentRecord(
            id=ID, app="shop", env="production", version="v1.0.1", requested_by="alice",
            deployment=engine,
        )
    )  # fmt: skip
    Lease(r, "shop", "production").acquire(lease_holder(record), ttl=600)
    RecordStore(r).advance(ID, "queued")
    RecordStore(r).advance(ID, "running", phase="stage")
    enqueue_phase(r, ID, "stage", 60)
    Job.fetch(job_id(ID, "stage"), connection=r).set_status(status)
    return record


def test_a_started_job_without_a_heartbeat_is_recovered_once(r: redis.Redis) -> None:
    running(r, JobStatus.STARTED)
    assert [(rec.id, why) for rec, why in sweeper.stalled(r)] == [
        (ID, "the worker running its stage job stopped beating")
    ]
    assert sweeper.sweep(r) == [ID]
    assert sweeper.sweep(r) == []  # a second sweeper (another worker) finds it claimed
    assert job_id(ID, "recovery") in queue(r).job_ids


def test_a_job_waiting_for_a_free_worker_is_not_stalled(r: redis.Redis) -> None:
    running(r, JobStatus.QUEUED)
    assert sweeper.stalled(r) == []


def test_a_deployment_between_two_phases_is_not_stalled(r: redis.Redis) -> None:
    """Stage ended and queued verify, but no worker is free to take it (every worker
    busy, or the only one restarting after a warm shutdown): stage's heartbeat lapses,
    the record still names stage, and the deployment is only waiting."""
    running(r, JobStatus.FINISHED)
    record = RecordStore(r).load(ID)
    assert record is not None and record.deployment is not None
    record.deployment.completed = ["prepare", "preflight", "backup", "stage"]
    RecordStore(r).save_engine(ID, record.deployment)
    enqueue_phase(r, ID, "verify", 60)
    assert sweeper.stalled(r) == []
    # Its worker died before it could queue verify: that one is stalled.
    Job.fetch(job_id(ID, "verify"), connection=r).delete()
    assert [rec.id for rec, _ in sweeper.stalled(r)] == [ID]


def test_a_slow_deployment_that_keeps_beating_is_never_stalled(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long phase (a 120 s stability window) beats throughout: scaled down here, the
    heartbeat outlives its own lifetime many times over while the sweeper looks."""
    monkeypatch.setattr(sweeper, "BEAT_EVERY", 0.05)
    monkeypatch.setattr(sweeper, "BEAT_TTL", 0.2)
    running(r, JobStatus.STARTED)

    async def long_phase() -> list[str]:
        seen = []
        async with sweeper.heartbeat(r, ID):
            for _ in range(20):  # 1 s: five heartbeat lifetimes
                await asyncio.sleep(0.05)
                seen += [rec.id for rec, _ in sweeper.stalled(r)]
        return seen

    assert asyncio.run(long_phase()) == []
    time.sleep(0.3)  # the phase's process is gone: its heartbeat lapses
    assert [rec.id for rec, _ in sweeper.stalled(r)] == [ID]


def test_a_stray_phase_job_never_moves_a_held_deployment_on(r: redis.Redis) -> None:
    """Only `promote` (or an abort) continues a deployment held for promotion: a phase
    job that turns up anyway (a retried or duplicated one) leaves it as it is."""
    running(r, JobStatus.FINISHED)
    RecordStore(r).advance(ID, "awaiting_promotion", phase="switch")
    asyncio.run(advance(r, ID))
    record = RecordStore(r).load(ID)
    assert record is not None and (record.state, record.phase) == ("awaiting_promotion", "switch")
