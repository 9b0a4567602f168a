"""7. Deployments on RQ workers: dispatch latency (a phase finished → the next phase's
job started, one per chained phase), event latency (emitted → read from the stream by a
follower), and the same deployment through RQ and in-process, side by side.

Two setups run interleaved in the same run, each on a Redis database of its own: one
`greenlight worker` alone, and two (Greenlight's smallest real setup: a worker per
machine, or several per machine). With one worker the next phase's job waits for the
work horse that queued it to exit and for the worker to dequeue and fork again; with a
second one idle, it starts while the first one is still cleaning up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Worker

from bench.common import (
    FAST,
    UNAPPROVED,
    WORK,
    Figure,
    Report,
    deploy_ok,
    fresh,
    median,
    spec,
    timed_deploy,
)
from deploy.events import DeployFinished, Kind
from deploy.probes import percentile
from deploy.spec import load_specs
from jobs.api import request_deployment
from jobs.streams import last_event_id, read_events

REDIS_URL = "redis://127.0.0.1:6379/3"
# Each setup's workers and requests use a database of their own (emptied first).
SETUPS = {1: "redis://127.0.0.1:6379/3", 2: "redis://127.0.0.1:6379/5"}
RUNS = 3


def start_worker(
    config: Path, redis_url: str = REDIS_URL, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A `greenlight worker` in a session of its own: its work horses (RQ puts each in a
    process group of its own) stay in that session, so it can be killed whole."""
    env = dict(os.environ, REDIS_URL=redis_url, GREENLIGHT_CONFIG=str(config))
    with open(log or os.devnull, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "greenlight", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def queued_deploy(
    connection: redis.Redis, config: Path, version: str
) -> tuple[float, list[float], list[float], dict[str, float]]:
    """Wall time, dispatch gaps (phase finished → next phase started), event lags and
    the phases' own times."""
    since = last_event_id(connection)
    started = time.monotonic()
    answer = request_deployment(
        connection, load_specs(config), app=None, env=None, version=version, who="bench"
    )
    assert answer.result == "accepted", answer.reason
    gaps: list[float] = []
    lags: list[float] = []
    finished_at: float | None = None
    while True:
        for entry, event in read_events(connection, after=since, block_ms=1000):
            since = entry
            if event.deployment != answer.deployment:
                continue
            lags.append(time.time() - event.at)
            if event.kind == Kind.phase_finished:
                finished_at = event.at
            elif event.kind == Kind.phase_started and finished_at is not None:
                gaps.append(event.at - finished_at)
            if isinstance(event, DeployFinished):
                assert event.outcome == "live", event.failure
                return time.monotonic() - started, gaps, lags, event.phases


def wait_registered(connection: redis.Redis, count: int) -> None:
    deadline = time.monotonic() + 60
    while Worker.count(connection=connection) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench setup: {count} workers did not register within 60 s")
        time.sleep(0.1)


@dataclass
class Setup:
    """One number of workers: what its queued deployments measured."""

    workers: int
    connection: redis.Redis
    gaps: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    phases: list[float] = field(default_factory=list)  # sum of the phases' own times


async def run(report: Report) -> None:
    print(
        "7. deployments on RQ workers (1 worker; 2 workers) vs in-process "
        f"(1 host, 1 s stability window, {RUNS} runs interleaved)"
    )
    quick = spec(["h1"], "workers", **FAST, **UNAPPROVED)
    config = WORK / "workers.yml"
    setups = {n: Setup(n, redis.Redis.from_url(url)) for n, url in SETUPS.items()}
    running = []
    try:
        for setup in setups.values():
            setup.connection.flushdb()
            running += [start_worker(config, SETUPS[setup.workers]) for _ in range(setup.workers)]
        for setup in setups.values():
            wait_registered(setup.connection, setup.workers)
        local: list[float] = []
        local_phases: list[float] = []
        for _ in range(RUNS):
            fresh()
            await deploy_ok(quick, "v1.0.0")
            record, wall, _ = await timed_deploy(quick, "v1.0.1")
            local.append(wall)
            local_phases.append(sum(record.phases.values()))
            for setup in setups.values():
                fresh()
                await deploy_ok(quick, "v1.0.0")
                wall, gaps, lags, phases = await asyncio.to_thread(
                    queued_deploy, setup.connection, config, "v1.0.1"
                )
                setup.walls.append(wall)
                setup.gaps += gaps
                setup.lags += lags
                setup.phases.append(sum(phases.values()))
    finally:
        for worker in running:
            worker.terminate()
        for worker in running:
            worker.wait(timeout=30)
    for setup in setups.values():
        report_setup(report, setup, local, local_phases)


def report_setup(
    report: Report, setup: Setup, local: list[float], local_phases: list[float]
) -> None:
    on = f"{setup.workers} worker{'s' if setup.workers > 1 else ''}"
    # The targets are for a real setup (two workers or more); a lone worker's figures are
    # shown beside them, without a verdict, so the difference can be read.
    judged = setup.workers >= 2
    gaps, lags = setup.gaps, setup.lags
    report.add(
        Figure(
            "workers",
            f"{on}: dispatch, phase finished -> next started, p95 of {len(gaps)}",
            percentile(gaps, 95) * 1000,
            "ms",
            "<= 50 ms" if judged else "",
            percentile(gaps, 95) <= 0.05 if judged else None,
            f"p50 {percentile(gaps, 50) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms",
        )
    )
    report.add(
        Figure(
            "workers",
            f"{on}: event emitted -> read from the stream, p95 of {len(lags)}",
            percentile(lags, 95) * 1000,
            "ms",
            "<= 20 ms" if judged else "",
            percentile(lags, 95) <= 0.02 if judged else None,
            f"p50 {percentile(lags, 50) * 1000:.1f} ms",
        )
    )
    extra = median(setup.walls) - median(local)
    report.add(
        Figure(
            "workers",
            f"{on}: the same deploy through RQ minus in-process, median of {RUNS}",
            extra,
            "s",
            "<= 1 s" if judged else "",
            extra <= 1.0 if judged else None,
            "RQ: "
            + ", ".join(f"{w:.2f}" for w in setup.walls)
            + "; in-process: "
            + ", ".join(f"{w:.2f}" for w in local)
            + f"; of the difference, the phases' own times (each job connects over SSH "
            f"again): {median(setup.phases) - median(local_phases):+.2f} s",
        )
    )
