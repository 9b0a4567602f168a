"""Redis crashes and comes back (AOF, fsync always, as compose.bot.yml runs it) while a
deployment runs on the workers: the deployment still ends, production serves
throughout, the audit trail and the records lose nothing, RQ's registries are clean."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobs.lease import Lease
from jobs.records import RecordStore
from jobs.streams import read_audit, read_events
from tests.e2e.conftest import FAST, UNAPPROVED, Bed, assert_served
from tests.e2e.test_workers import assert_nothing_left, requested_id, start_worker
from tests.redis_server import RedisServer


@pytest.fixture
def private_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    monkeypatch.setenv("REDIS_URL", server.url)
    yield server
    server.stop()


@pytest.mark.parametrize(
    "when", ["stage .*starting green", "≈ interval 2"], ids=["stage", "window"]
)
def test_a_redis_crash_mid_deployment_loses_nothing(
    bed: Bed, private_redis: RedisServer, when: str
) -> None:
    spec = bed.spec(**{**FAST, "stability": {"duration": 6, "interval": 1}}, **UNAPPROVED)
    worker = start_worker(spec)
    try:
        assert bed.greenlight("deploy", "v1.0.0", "--queue", config=spec).code == 0
        with bed.load("h1") as load:
            running = bed.start("deploy", "v1.0.1", "--queue", config=spec)
            running.wait_for(when)
            private_redis.kill()
            time.sleep(1.0)  # Redis is away for a second, as a restart takes
            private_redis.start()
            run = running.finish(timeout=240)
        assert_served(load.stop())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    assert run.code == 0 and run.has(r"v1.0.1 is live"), run.output
    assert bed.live(spec) == {"h1": "v1.0.1"}
    connection = redis.Redis.from_url(private_redis.url)
    deployment = requested_id(run.output)
    record = RecordStore(connection).load(deployment)
    assert record is not None and record.state == "live"
    phases = [t.phase for t in record.transitions if t.state == "running"]
    assert phases[-3:] == ["switch", "monitor", "finalize"]
    assert [(e.action, e.result) for e in read_audit(connection)] == [("deploy", "accepted")] * 2
    finished = [e for _, e in read_events(connection, count=10_000) if e.deployment == deployment]
    assert [e.kind for e in finished].count("deploy_finished") == 1
    assert Lease(connection, "sample", "production").holder() is None
    assert_nothing_left(connection)
