"""7. Deployments on RQ workers: dispatch latency (a phase's job enqueued → the phase
started, one per chained phase), event latency (emitted → read from the stream by a
follower), and the same deployment through RQ and in-process, side by side."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

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
) -> tuple[float, list[float], list[float]]:
    """Wall time, dispatch gaps (phase finished → next phase started) and event lags."""
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
                return time.monotonic() - started, gaps, lags


async def run(report: Report) -> None:
    print("7. deployments on RQ workers vs in-process (1 host, 1 s stability window)")
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    quick = spec(["h1"], "workers", **FAST, **UNAPPROVED)
    config = WORK / "workers.yml"
    worker = start_worker(config)
    gaps: list[float] = []
    lags: list[float] = []
    walls: dict[str, list[float]] = {"rq": [], "in-process": []}
    try:
        for _ in range(RUNS):
            fresh()
            await deploy_ok(quick, "v1.0.0")
            _, wall, _ = await timed_deploy(quick, "v1.0.1")
            walls["in-process"].append(wall)
            fresh()
            await deploy_ok(quick, "v1.0.0")
            wall, run_gaps, run_lags = await asyncio.to_thread(
                queued_deploy, connection, config, "v1.0.1"
            )
            walls["rq"].append(wall)
            gaps += run_gaps
            lags += run_lags
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    report.add(
        Figure(
            "workers",
            f"dispatch: phase finished -> next phase's job started, p95 of {len(gaps)}",
            percentile(gaps, 95) * 1000,
            "ms",
            "<= 50 ms",
            percentile(gaps, 95) <= 0.05,
            f"p50 {percentile(gaps, 50) * 1000:.1f} ms",
        )
    )
    report.add(
        Figure(
            "workers",
            f"event emitted -> read from the stream, p95 of {len(lags)}",
            percentile(lags, 95) * 1000,
            "ms",
            "<= 20 ms",
            percentile(lags, 95) <= 0.02,
            f"p50 {percentile(lags, 50) * 1000:.1f} ms",
        )
    )
    extra = median(walls["rq"]) - median(walls["in-process"])
    report.add(
        Figure(
            "workers",
            f"the same deploy through RQ minus in-process, median of {RUNS}",
            extra,
            "s",
            "<= 1 s",
            extra <= 1.0,
            "RQ: "
            + ", ".join(f"{w:.2f}" for w in walls["rq"])
            + "; in-process: "
            + ", ".join(f"{w:.2f}" for w in walls["in-process"]),
        )
    )
