"""8. Four deployments at once on RQ workers: the sample app and the ledger app, each in
production and in staging, all four on the same host (each its own app dir, ports,
upstream and compose projects), requested together onto 1, 2 and 4 `greenlight worker`
processes; wall time until all four are live, beside one deployment alone on one
worker (1 s stability window)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from rq import Worker

from bench.common import FAST, UNAPPROVED, WHO, WORK, Figure, Report, fresh, median
from bench.workers import start_worker
from deploy.events import DeployFinished, ListSink
from deploy.pipeline import deploy
from deploy.spec import Spec, load_specs
from jobs.api import request_deployment
from jobs.streams import last_event_id, read_events
from testbed import specs

REDIS_URL = "redis://127.0.0.1:6379/6"  # a database of its own, emptied first
HOSTS = ("h1",)
RUNS = 2
WORKER_COUNTS = (1, 2, 4)
ALL_FOUR = [(app, env) for app in ("sample", "ledger") for env in ("production", "staging")]
ALONE = [("sample", "production")]
VERSIONS = ("v1.0.0", "v1.0.1")  # every run: the first in-process, then the second queued
DEADLINE = 300.0


def apps_dir() -> Path:
    """Both apps' specs, both environments of each on HOSTS."""
    folder = WORK / "concurrent-apps"
    folder.mkdir(exist_ok=True)
    for app in ("sample", "ledger"):
        both = ("production", "staging")
        specs.variant(HOSTS, folder / f"{app}.yml", app=app, envs=both, **FAST, **UNAPPROVED)
    return folder


def start_workers(
    config: Path, count: int, connection: redis.Redis
) -> list[subprocess.Popen[bytes]]:
    """`count` workers, each registered with Redis before the clock starts."""
    workers = [start_worker(config, REDIS_URL) for _ in range(count)]
    deadline = time.monotonic() + 60
    while Worker.count(connection=connection) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench setup: {count} workers did not register within 60 s")
        time.sleep(0.1)
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=60)


async def everything_at(all_specs: dict[str, Spec], version: str) -> None:
    """Every one of the four deployments live at `version`, in-process, from fresh hosts:
    each queued run starts from the same state."""
    fresh()
    records = await asyncio.gather(
        *(deploy(all_specs[app], env, version, WHO, ListSink()) for app, env in ALL_FOUR)
    )
    for (app, env), record in zip(ALL_FOUR, records, strict=True):
        if record.outcome != "live":
            raise SystemExit(f"bench setup: {app}/{env} {version} ended {record.outcome}")


def queued(
    connection: redis.Redis, all_specs: dict[str, Spec], targets: list[tuple[str, str]]
) -> tuple[float, dict[str, float]]:
    """Request every target's deployment at once; the wall time until the last one is
    live, and each one's own."""
    since = last_event_id(connection)
    started = time.monotonic()
    pending: dict[str, str] = {}
    for app, env in targets:
        answer = request_deployment(
            connection, all_specs, app=app, env=env, version=VERSIONS[1], who=WHO
        )
        if answer.result != "accepted" or answer.deployment is None:
            raise SystemExit(f"bench: {app}/{env} refused: {answer.reason}")
        pending[answer.deployment] = f"{app}/{env}"
    walls: dict[str, float] = {}
    while pending:
        if time.monotonic() - started > DEADLINE:
            raise SystemExit(f"bench: still running after {DEADLINE:.0f} s: {sorted(pending)}")
        for entry, event in read_events(connection, after=since, block_ms=1000):
            since = entry
            if isinstance(event, DeployFinished) and event.deployment in pending:
                target = pending.pop(event.deployment)
                if event.outcome != "live":
                    raise SystemExit(f"bench: {target} ended {event.outcome}: {event.failure}")
                walls[target] = time.monotonic() - started
    for target in walls:  # live means its own public URL answers the new version
        app, env = target.split("/")
        url = all_specs[app].environment(env).public_url
        served = httpx.get(url.rstrip("/") + "/api/health/", timeout=5)
        if served.headers.get("X-App-Version") != VERSIONS[1]:
            raise SystemExit(f"bench: {target} serves {served.headers.get('X-App-Version')}")
    return max(walls.values()), walls


@dataclass
class Series:
    """Runs of the same request on the same number of workers."""

    walls: list[float] = field(default_factory=list)  # until the last one was live
    each: dict[str, list[float]] = field(default_factory=dict)
    cpu: list[float] = field(default_factory=list)  # the machine's busy CPU-seconds

    def of(self, target: str) -> float:
        return median(self.each[target])


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy since boot (every process: the workers,
    compose, dockerd, sshd, nginx and the apps)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


async def series(
    connection: redis.Redis, config: Path, workers: int, targets: list[tuple[str, str]]
) -> Series:
    all_specs = load_specs(config)
    running = start_workers(config, workers, connection)
    result = Series()
    try:
        for _ in range(RUNS):
            await everything_at(all_specs, VERSIONS[0])
            cpu = busy_cpu_seconds()
            wall, walls = await asyncio.to_thread(queued, connection, all_specs, targets)
            result.cpu.append(busy_cpu_seconds() - cpu)
            result.walls.append(wall)
            for target, each in walls.items():
                result.each.setdefault(target, []).append(each)
    finally:
        stop_workers(running)
    return result


async def run(report: Report) -> None:
    print(
        "8. four deployments at once (sample, ledger x production, staging) on 1, 2, 4 "
        f"workers vs one alone ({len(HOSTS)} host, 1 s stability window, median of {RUNS})"
    )
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    config = apps_dir()
    alone = await series(connection, config, 1, ALONE)
    rows = {count: await series(connection, config, count, ALL_FOUR) for count in WORKER_COUNTS}
    names = [f"{app}/{env}" for app, env in ALL_FOUR]
    print(f"  {'':<22}{'all done':>9}{'CPU-s':>7}" + "".join(f"{n:>19}" for n in names))
    for label, row in [("one alone, 1 worker", alone)] + [
        (f"four, {count} worker(s)", row) for count, row in rows.items()
    ]:
        cells = "".join(f"{row.of(n):>18.2f}s" if n in row.each else f"{'':>19}" for n in names)
        print(f"  {label:<22}{median(row.walls):>8.2f}s{median(row.cpu):>7.1f}{cells}")
    cores = os.cpu_count() or 1
    for count, row in rows.items():
        report.add(
            Figure(
                "four",
                f"four deployments at once on {count} worker(s), wall until all live",
                median(row.walls),
                "s",
                detail="runs: " + ", ".join(f"{t:.2f}" for t in row.walls),
            )
        )
    reference = median(alone.walls)
    report.add(
        Figure(
            "four",
            "one deployment alone on one worker",
            reference,
            "s",
            detail="runs: " + ", ".join(f"{t:.2f}" for t in alone.walls),
        )
    )
    ratio = median(rows[4].walls) / reference
    report.add(
        Figure(
            "four",
            "four at once on 4 workers / one alone",
            ratio,
            "x",
            "<= 1.3x",
            ratio <= 1.3,
            # The machine cannot do the four in less than their CPU time over its cores.
            f"the machine's busy CPU: {median(rows[4].cpu):.1f} CPU-s for the four, "
            f"{median(alone.cpu):.1f} for one; on {cores} cores the four need at least "
            f"{median(rows[4].cpu) / cores:.1f} s",
        )
    )
