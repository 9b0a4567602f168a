"""Deployments as phase jobs on real `greenlight worker` processes and a real Redis:
the same pipeline, the same lines and exit codes, nothing left behind in RQ."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq.registry import DeferredJobRegistry, FailedJobRegistry, StartedJobRegistry

from jobs.lease import Lease
from jobs.queue import queue
from jobs.records import RecordStore
from jobs.streams import read_audit
from tests.e2e.conftest import FAST, ROOT, Bed, assert_served, cli_env

REDIS_URL = "redis://127.0.0.1:6379/2"  # the test bed's Redis, a database of its own


def start_worker(spec: Path) -> subprocess.Popen[bytes]:
    """A `greenlight worker` in a session of its own, so a test can kill it whole."""
    return subprocess.Popen(
        [sys.executable, "-m", "greenlight", "worker"],
        cwd=ROOT,
        env=cli_env() | {"GREENLIGHT_CONFIG": str(spec)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture
def workers(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, redis.Redis]]:
    """One worker process for the test's spec; Redis emptied first."""
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    spec = bed.spec(**FAST)
    started = [start_worker(spec)]
    yield spec, connection
    for worker in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    connection.close()


def assert_nothing_left(connection: redis.Redis) -> None:
    """No job of a finished deployment is left queued, started, deferred or failed."""
    q = queue(connection)
    assert q.count == 0
    for registry in (StartedJobRegistry, DeferredJobRegistry, FailedJobRegistry):
        assert registry(queue=q).get_job_ids() == [], registry.__name__


def test_a_deployment_through_the_workers_reads_and_ends_like_one_in_process(
    bed: Bed, workers: tuple[Path, redis.Redis]
) -> None:
    spec, connection = workers
    first = bed.greenlight("deploy", "v1.0.0", "--queue", config=spec)
    assert first.code == 0 and first.has(r"v1.0.0 is live"), first.output
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.1", "--queue", config=spec)
    assert_served(load.stop())
    assert run.code == 0, run.output
    assert run.has(r"production-v1.0.1-\d{8}_\d{6} queued")
    assert run.has(r"switch +h1 .* answers v1.0.1") and run.has(r"exit 0")
    assert bed.live(spec) == {"h1": "v1.0.1"}
    deployment = run.output.split(" queued")[0].split()[-1]
    record = RecordStore(connection).load(deployment)
    assert record is not None and record.state == "live"
    assert [t.phase for t in record.transitions if t.state == "running"] == [
        "prepare", "preflight", "backup", "stage", "verify", "test", "smoke", "switch",
        "monitor", "finalize",
    ]  # fmt: skip
    assert Lease(connection, "sample", "production").holder() is None
    assert [(e.action, e.result) for e in read_audit(connection)] == [("deploy", "accepted")] * 2
    trail = subprocess.run(
        [sys.executable, "-m", "greenlight", "audit", "-n", "1"],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(trail) == 1
    assert trail[0].split()[2:] == ["e2e", "deploy", "accepted", "sample/production"]
    history = bed.greenlight("history", "-n", "2", "--json", config=spec)
    assert [(h["version"], h["result"]) for h in json.loads(history.output)] == [
        ("v1.0.1", "live"),
        ("v1.0.0", "live"),
    ]
    assert_nothing_left(connection)


def test_a_failing_release_through_the_workers_leaves_production_untouched(
    bed: Bed, workers: tuple[Path, redis.Redis]
) -> None:
    spec, connection = workers
    assert bed.greenlight("deploy", "v1.0.1", "--queue", config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.2", "--queue", config=spec)
    assert_served(load.stop())
    assert run.code == 1 and run.has(r"production untouched"), run.output
    assert bed.live(spec) == {"h1": "v1.0.1"}
    assert Lease(connection, "sample", "production").holder() is None
    assert_nothing_left(connection)


def test_two_requests_at_once_one_runs_the_other_is_told_who_holds_it(
    bed: Bed, workers: tuple[Path, redis.Redis]
) -> None:
    spec, connection = workers
    argv = [sys.executable, "-m", "greenlight", "deploy", "v1.0.0", "--queue"]
    both = [
        subprocess.Popen(
            [*argv, "--config", str(spec)],
            cwd=ROOT,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in both]
    codes = sorted(p.returncode for p in both)
    assert codes == [0, 2], outputs
    refused = next(o for o, p in zip(outputs, both, strict=True) if p.returncode == 2)
    assert "refused: sample/production is being deployed: production-v1.0.0-" in refused
    assert "by e2e" in refused
    audit = [(e.action, e.result) for e in read_audit(connection)]
    assert sorted(audit) == [("deploy", "accepted"), ("deploy", "refused")]
    assert_nothing_left(connection)


def test_cancel_before_the_switch_tears_the_new_colour_down(
    bed: Bed, workers: tuple[Path, redis.Redis]
) -> None:
    spec, connection = workers
    assert bed.greenlight("deploy", "v1.0.0", "--queue", config=spec).code == 0
    with bed.load("h1") as load:
        running = bed.start("deploy", "v1.0.1", "--queue", config=spec)
        running.wait_for(r"stage .*starting green")
        asked = bed.greenlight("cancel", config=spec)
        run = running.finish()
    assert_served(load.stop())
    assert asked.code == 0 and asked.has(r"cancelling production-v1.0.1-"), asked.output
    assert run.code == 1 and run.has(r"cancelled by an operator"), run.output
    assert run.has(r"production untouched")
    assert bed.live(spec) == {"h1": "v1.0.0"}
    deployment = run.output.split(" queued")[0].split()[-1]
    record = RecordStore(connection).load(deployment)
    assert record is not None and record.state == "cancelled"
    assert [(e.action, e.result) for e in read_audit(connection)][-1] == ("cancel", "accepted")
    assert Lease(connection, "sample", "production").holder() is None
    nothing = bed.greenlight("cancel", config=spec)
    assert nothing.code == 2 and nothing.has(r"nothing is deploying sample/production")
    assert_nothing_left(connection)


def test_ctrl_c_while_following_rolls_back_a_switched_release(
    bed: Bed, workers: tuple[Path, redis.Redis]
) -> None:
    spec, connection = workers
    assert bed.greenlight("deploy", "v1.0.0", "--queue", config=spec).code == 0
    window = bed.spec(name="window", stability={"duration": 30, "interval": 1})
    # the worker reads its own spec; the window is the same file's, rewritten
    spec.write_text(window.read_text())
    with bed.load("h1") as load:
        running = bed.start("deploy", "v1.0.1", "--queue", config=spec)
        running.wait_for(r"≈ interval 2")
        running.process.send_signal(signal.SIGINT)
        run = running.finish()
    assert_served(load.stop())
    assert run.code == 1, run.output
    assert run.has(r"monitor failed: cancelled by an operator")
    assert run.has(r"traffic is back on v1.0.0")
    assert bed.live(spec) == {"h1": "v1.0.0"}
    assert_nothing_left(connection)


@pytest.mark.parametrize(
    ("step", "window"),
    [("stage .*starting green", 1), ("≈ interval 2", 30)],
    ids=["stage", "window"],
)
def test_a_worker_killed_mid_deployment_is_noticed_and_production_recovered(
    bed: Bed, workers: tuple[Path, redis.Redis], step: str, window: float
) -> None:
    spec, connection = workers
    assert bed.greenlight("deploy", "v1.0.0", "--queue", config=spec).code == 0
    spec.write_text(bed.spec(name="w", stability={"duration": window, "interval": 1}).read_text())
    doomed = start_worker(spec)  # a second worker; then every worker there is dies at once
    with bed.load("h1") as load:
        running = bed.start("deploy", "v1.0.1", "--queue", config=spec)
        running.wait_for(step)
        for pid in {p.pid for p in [doomed]} | set(worker_pids()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        killed = time.monotonic()
        survivor = start_worker(spec)  # a fresh worker's sweeper notices the stall
        try:
            run = running.finish(timeout=180)
            took = time.monotonic() - killed
        finally:
            os.killpg(survivor.pid, signal.SIGTERM)
            survivor.wait(timeout=30)
    assert_served(load.stop())
    assert run.has(r"taking over production-v1.0.1-.*stopped beating"), run.output
    assert run.code == 1 and took < 60, (took, run.output)
    assert bed.live(spec) == {"h1": "v1.0.0"}
    deployment = run.output.split(" queued")[0].split()[-1]
    record = RecordStore(connection).load(deployment)
    assert record is not None and record.state == "recovered"
    assert bed.status(spec)["hosts"][0]["bad_versions"] == []  # a crash blames no release
    assert bed.status(spec)["hosts"][0]["lock"] is None
    assert Lease(connection, "sample", "production").holder() is None
    assert ("recover", "accepted") in [(e.action, e.result) for e in read_audit(connection)]
    assert_nothing_left(connection)


def worker_pids() -> list[int]:
    """Every `greenlight worker` process group running now."""
    found = subprocess.run(
        ["pgrep", "-f", "greenlight worker"], capture_output=True, text=True, check=False
    )
    return [os.getpgid(int(p)) for p in found.stdout.split() if p.strip()]
