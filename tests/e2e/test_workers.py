"""Deployments as phase jobs on real `greenlight worker` processes and a real Redis:
the same pipeline, the same lines and exit codes, nothing left behind in RQ."""

from __future__ import annotations

import contextlib
import json
import os
import re
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
from jobs.streams import read_audit, read_events
from tests.e2e.conftest import FAST, ROOT, UNAPPROVED, Bed, assert_served, cli_env
from tests.e2e.test_apps import apps_dir, live

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


@contextlib.contextmanager
def running_workers(config: Path, count: int = 1) -> Iterator[None]:
    """`count` worker processes for this config, stopped at the end."""
    started = [start_worker(config) for _ in range(count)]
    try:
        yield
    finally:
        for worker in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)


@pytest.fixture
def fresh_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The bed's Redis, this test's database, emptied first."""
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    yield connection
    connection.close()


@pytest.fixture
def workers(bed: Bed, fresh_redis: redis.Redis) -> Iterator[tuple[Path, redis.Redis]]:
    """One worker process for the test's spec; Redis emptied first."""
    spec = bed.spec(**FAST, **UNAPPROVED)
    with running_workers(spec):
        yield spec, fresh_redis


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
    deployment = requested_id(run.output)
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
    assert trail[0].split()[2:] == ["e2e", "deploy", "accepted", "sample/production", deployment]
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
    assert run.has(r"• deploy of v1.0.1 to sample/production was cancelled: cancelled by e2e")
    assert bed.live(spec) == {"h1": "v1.0.0"}
    deployment = requested_id(run.output)
    record = RecordStore(connection).load(deployment)
    assert record is not None and record.state == "cancelled"
    assert [(e.action, e.result) for e in read_audit(connection)][-1] == ("cancel", "accepted")
    assert Lease(connection, "sample", "production").holder() is None
    nothing = bed.greenlight("cancel", config=spec)
    assert nothing.code == 2, nothing.output
    assert nothing.has(r"nothing to cancel on sample/production: no deployment is in progress")
    assert_nothing_left(connection)


def test_ctrl_c_while_following_rolls_back_a_switched_release(
    bed: Bed, workers: tuple[Path, redis.Redis]
) -> None:
    spec, connection = workers
    assert bed.greenlight("deploy", "v1.0.0", "--queue", config=spec).code == 0
    window = bed.spec(name="window", stability={"duration": 30, "interval": 1}, **UNAPPROVED)
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
    [("stage .*starting green", 1), ("verify +▶ ", 1), ("switch +▶ ", 1), ("≈ interval 2", 30)],
    ids=["stage", "verify", "switch", "window"],
)
def test_a_worker_killed_mid_deployment_is_noticed_and_production_recovered(
    bed: Bed, workers: tuple[Path, redis.Redis], step: str, window: float
) -> None:
    spec, connection = workers
    assert bed.greenlight("deploy", "v1.0.0", "--queue", config=spec).code == 0
    spec.write_text(
        bed.spec(name="w", stability={"duration": window, "interval": 1}, **UNAPPROVED).read_text()
    )
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
    deployment = requested_id(run.output)
    record = RecordStore(connection).load(deployment)
    assert record is not None and record.state == "recovered"
    assert bed.status(spec)["hosts"][0]["bad_versions"] == []  # a crash blames no release
    assert bed.status(spec)["hosts"][0]["lock"] is None
    assert Lease(connection, "sample", "production").holder() is None
    assert ("recover", "accepted") in [(e.action, e.result) for e in read_audit(connection)]
    assert_nothing_left(connection)


def requested_id(output: str) -> str:
    """The id `--queue` prints when its request is accepted."""
    found = re.search(r"^greenlight: \w+: (\S+) (?:queued|awaiting approval)$", output, re.M)
    assert found, output
    return found.group(1)


def worker_pids() -> list[int]:
    """Every `greenlight worker` process group running now."""
    found = subprocess.run(
        ["pgrep", "-f", "greenlight worker"], capture_output=True, text=True, check=False
    )
    return [os.getpgid(int(p)) for p in found.stdout.split() if p.strip()]


def test_approval_by_someone_else_then_the_deployment_runs(
    bed: Bed, workers: tuple[Path, redis.Redis]
) -> None:
    spec, connection = workers
    spec.write_text(bed.spec(name="approval", approval="required", **FAST).read_text())
    running = bed.start("deploy", "v1.0.0", "--queue", "--who", "alice", config=spec)
    deployment = running.wait_for(r"greenlight approve \S+").split("approve ")[1].strip("`\n ")
    own = bed.greenlight("approve", deployment, "--who", "alice", config=spec)
    assert own.code == 2 and own.has(r"alice asked for it; someone else has to approve it")
    approved = bed.greenlight("approve", deployment, "--who", "bob", config=spec)
    assert approved.code == 0, approved.output
    run = running.finish()
    assert run.code == 0 and run.has(r"is queued \(bob\)") and run.has(r"v1.0.0 is live"), (
        run.output
    )
    record = RecordStore(connection).load(deployment)
    assert record is not None and (record.state, record.approved_by) == ("live", "bob")
    rejected = bed.start("deploy", "v1.0.1", "--queue", "--who", "alice", config=spec)
    second = rejected.wait_for(r"greenlight approve \S+").split("approve ")[1].strip("`\n ")
    assert bed.greenlight("reject", second, "--reason", "freeze", config=spec).code == 0
    run = rejected.finish()
    assert run.code == 2 and run.has(r"was rejected \(e2e\): freeze"), run.output
    assert bed.live(spec) == {"h1": "v1.0.0"}
    assert_nothing_left(connection)


def test_manual_promotion_holds_the_verified_colour_until_promoted(
    bed: Bed, workers: tuple[Path, redis.Redis]
) -> None:
    spec, connection = workers
    assert bed.greenlight("deploy", "v1.0.0", "--queue", config=spec).code == 0
    spec.write_text(bed.spec(name="gate", promote="manual", **FAST, **UNAPPROVED).read_text())
    with bed.load("h1") as load:
        running = bed.start("deploy", "v1.0.1", "--queue", config=spec)
        running.wait_for(r"awaits promotion")
        held = bed.status(spec)["hosts"][0]
        assert held["live"]["version"] == "v1.0.0"  # production untouched while held
        assert StartedJobRegistry(queue=queue(connection)).get_job_ids() == []  # no worker held
        assert bed.greenlight("promote", config=spec).code == 0
        run = running.finish()
    assert_served(load.stop())
    assert run.code == 0 and run.has(r"v1.0.1 is live"), run.output
    assert bed.live(spec) == {"h1": "v1.0.1"}
    assert_nothing_left(connection)


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_held_deployment_aborted_or_timed_out_is_torn_down(
    bed: Bed, workers: tuple[Path, redis.Redis], how: str
) -> None:
    spec, connection = workers
    assert bed.greenlight("deploy", "v1.0.0", "--queue", config=spec).code == 0
    wait = 3 if how == "timeout" else 600
    spec.write_text(
        bed.spec(
            name="gate", promote="manual", promote_timeout=wait, **FAST, **UNAPPROVED
        ).read_text()
    )
    with bed.load("h1") as load:
        running = bed.start("deploy", "v1.0.1", "--queue", config=spec)
        running.wait_for(r"awaits promotion")
        if how == "cancel":
            assert bed.greenlight("cancel", config=spec).code == 0
        run = running.finish()
    assert_served(load.stop())
    why = "no promotion within 3 s" if how == "timeout" else "cancelled by e2e"
    assert run.code == 1 and run.has(rf"was cancelled: .*{why}"), run.output
    assert run.has(r"production untouched")
    assert bed.live(spec) == {"h1": "v1.0.0"}
    host = bed.status(spec)["hosts"][0]
    running = [c["version"] for c in host["colors"].values() if c and c["status"] == "running"]
    assert host["lock"] is None and running == ["v1.0.0"], host
    assert_nothing_left(connection)


def test_a_queued_rollback_after_failed_candidates_lands_on_the_last_good_release(
    bed: Bed, workers: tuple[Path, redis.Redis]
) -> None:
    spec, connection = workers
    for version, code in (("v1.0.0", 0), ("v1.0.1", 0), ("v1.0.2", 1), ("v1.0.4", 1)):
        assert bed.greenlight("deploy", version, "--queue", config=spec).code == code
    with bed.load("h1") as load:
        run = bed.greenlight("rollback", "--queue", config=spec)
    assert_served(load.stop())
    assert run.code == 0 and run.has(r"production-rollback-\S+ queued"), run.output
    assert run.has(r"rollback of v1.0.0 to sample/production is live")
    assert bed.live(spec) == {"h1": "v1.0.0"}
    nowhere = bed.greenlight("rollback", "--queue", "--to", "v1.0.2", config=spec)
    assert nowhere.code == 2, nowhere.output
    assert nowhere.has(r"v1.0.2 is recorded as bad; it is never rolled back to")
    assert_nothing_left(connection)


def test_two_apps_at_once_on_two_workers_both_go_live(bed: Bed, fresh_redis: redis.Redis) -> None:
    connection = fresh_redis
    config = apps_dir(bed, **UNAPPROVED)
    with running_workers(config, count=2):  # the two deployments run side by side
        both = [
            bed.start("deploy", version, "--queue", "--app", app, config=config)
            for app, version in (("sample", "v1.0.0"), ("ledger", "v1.0.1"))
        ]
        runs = [running.finish() for running in both]
    assert [run.code for run in runs] == [0, 0], [run.output for run in runs]
    assert runs[0].has(r"sample-production-v1.0.0-\S+ queued")
    assert runs[1].has(r"ledger-production-v1.0.1-\S+ queued")
    assert live(bed, config, "sample") == {"h1": "v1.0.0", "h2": "v1.0.0"}
    assert live(bed, config, "ledger") == {"h1": "v1.0.1", "h2": "v1.0.1"}
    starts = {
        e.deployment.split("-")[0]: e.at
        for _, e in read_events(connection, count=10_000)
        if e.kind == "phase_started" and e.phase == "stage"
    }
    finishes = {
        e.deployment.split("-")[0]: e.at
        for _, e in read_events(connection, count=10_000)
        if e.kind == "deploy_finished"
    }
    # they overlapped: each started staging before the other finished
    assert starts["sample"] < finishes["ledger"] and starts["ledger"] < finishes["sample"]
    assert_nothing_left(connection)


@pytest.mark.parametrize("phase", ["backup", "verify", "smoke", "switch"])
def test_cancel_at_each_phase_puts_production_back(
    bed: Bed, workers: tuple[Path, redis.Redis], phase: str
) -> None:
    spec, connection = workers
    assert bed.greenlight("deploy", "v1.0.0", "--queue", config=spec).code == 0
    with bed.load("h1") as load:
        running = bed.start("deploy", "v1.0.1", "--queue", config=spec)
        running.wait_for(rf"{phase} +▶ ")
        assert bed.greenlight("cancel", config=spec).code == 0
        run = running.finish()
    assert_served(load.stop())
    assert run.code == 1 and run.has(r"cancelled by an operator"), run.output
    assert run.has(r"was cancelled: cancelled by e2e")
    assert bed.live(spec) == {"h1": "v1.0.0"}
    host = bed.status(spec)["hosts"][0]
    assert host["lock"] is None and host["bad_versions"] == []  # a cancel blames no release
    assert Lease(connection, "sample", "production").holder() is None
    assert_nothing_left(connection)
