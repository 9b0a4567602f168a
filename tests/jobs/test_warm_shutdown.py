"""What `docker compose stop` or `restart` does to a busy `greenlight worker`: SIGTERM
is a warm shutdown. The phase job running goes on to its end and queues the next
phase; the stopping worker takes no other job, and the next worker carries the chain
on. A second SIGTERM is a cold shutdown: the job is killed where it stands (and the
sweeper's heartbeat check hands its deployment to recovery, tests/jobs/test_sweeper.py).

Real `greenlight worker` processes (RQ's scheduler and the sweeper thread included)
against the private Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus

from jobs.queue import queue
from tests.jobs.shutdown_jobs import RAN_BY

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:  # an idle worker stops at once, and takes its scheduler along
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def start_worker(
    started: list[subprocess.Popen[bytes]], redis_url: str, tmp_path: Path, name: str
) -> tuple[subprocess.Popen[bytes], Path]:
    name_file = tmp_path / f"{name}.name"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
        "GREENLIGHT_CONFIG": str(tmp_path / "no-spec.yml"),
        "GREENLIGHT_WORKER_NAME_FILE": str(name_file),
    }
    log = (tmp_path / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "greenlight", "worker"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    started.append(process)
    return process, name_file


def wait_for(what: str, check: object, timeout: float = 20) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def status(r: redis.Redis, job_id: str) -> JobStatus | None:
    try:
        return Job.fetch(job_id, connection=r).get_status(refresh=True)
    except Exception:
        return None


def test_sigterm_finishes_the_phase_and_the_next_worker_carries_on(
    r: redis.Redis,
    redis_server: str,
    tmp_path: Path,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    first, first_name = start_worker(workers, redis_server, tmp_path, "first")
    wait_for("the first worker registers", first_name.exists)
    queue(r).enqueue_call(
        "tests.jobs.shutdown_jobs.long_phase", args=(3.0, "after"), job_id="long", result_ttl=600
    )
    wait_for("the long phase starts", lambda: status(r, "long") == JobStatus.STARTED)
    time.sleep(0.5)
    first.send_signal(signal.SIGTERM)  # what `docker compose stop` sends

    assert first.wait(timeout=30) == 0, (tmp_path / "first.log").read_text()
    assert status(r, "long") == JobStatus.FINISHED  # the phase ran to its end
    assert status(r, "after") == JobStatus.QUEUED  # and the stopping worker left the next one

    _, second_name = start_worker(workers, redis_server, tmp_path, "second")
    wait_for(
        "the next worker runs the next phase", lambda: status(r, "after") == JobStatus.FINISHED
    )
    assert r.get(RAN_BY.format(name="long")) == first_name.read_bytes()
    assert r.get(RAN_BY.format(name="after")) == second_name.read_bytes()
    assert first_name.read_text() != second_name.read_text()


def test_a_second_sigterm_kills_the_phase_where_it_stands(
    r: redis.Redis,
    redis_server: str,
    tmp_path: Path,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    """The cold shutdown (what the grace period's end amounts to): nothing after the
    kill runs, so the next phase is never queued by a half-done one; the job is left
    started, which the sweeper takes for a stall once its heartbeat lapses."""
    worker, name = start_worker(workers, redis_server, tmp_path, "cold")
    wait_for("the worker registers", name.exists)
    queue(r).enqueue_call(
        "tests.jobs.shutdown_jobs.long_phase", args=(30.0, "after"), job_id="long", result_ttl=600
    )
    wait_for("the long phase starts", lambda: status(r, "long") == JobStatus.STARTED)
    worker.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # RQ ignores a second signal within a second of the first
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    time.sleep(0.5)
    assert status(r, "long") == JobStatus.STARTED
    assert status(r, "after") is None
