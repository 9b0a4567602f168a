"""8. Crash recovery on RQ workers: a deployment's worker SIGKILLed (its whole session:
the parent and the work horse, which RQ puts in a process group of its own) in stage,
at the start of the switch and inside the stability window, with a fresh worker started
at once. Measured from the SIGKILL to the moment all three hold: the deployment's record
is "recovered", the stream carries the takeover (its warning, its deploy_finished and
the request's "recovered" event), and the public URL answers one version, the one the
takeover left live. Each trial
starts from empty hosts, with v1.0.0 live and 16 clients on the public URL throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from rq.registry import FailedJobRegistry, StartedJobRegistry

from bench.common import (
    FAST,
    UNAPPROVED,
    WHO,
    WORK,
    Figure,
    Report,
    deploy_ok,
    fresh,
    load_at,
    median,
    spec,
)
from bench.workers import start_worker
from deploy.events import DeployFinished, Event, Kind, Metrics
from deploy.spec import load_specs
from jobs.api import request_deployment
from jobs.lease import Lease
from jobs.queue import queue
from jobs.records import RecordStore
from jobs.streams import last_event_id, read_events
from testbed.load import VERSION_HEADER, LoadResult

REDIS_URL = "redis://127.0.0.1:6379/4"  # a database of its own, emptied first
TRIALS = 5
# On the 3-host bed the public URL is its load balancer; on a larger one (`make bench`
# brings up 10) the environment is not every host and h1's proxy stands in for it.
HOSTS = ("h1", "h2", "h3")
PHASES = ("stage", "switch", "monitor")
OLD, NEW = "v1.0.0", "v1.0.1"
TARGET = 60.0  # seconds from the SIGKILL to a recovered, settled production
WINDOW = {"duration": 20, "interval": 1}  # long enough to die inside it
LOAD_FIRST = 2.0  # seconds of load before the request: its clients are all connected
HOLD_AFTER = 2.0  # seconds of load after production settled
UP_TO_KILL = 180.0  # seconds from the request to the kill point, at most
UP_TO_RECOVERY = 180.0  # seconds from the SIGKILL to recovery, at most (then: not recovered)
PROBES = 12  # consecutive answers of one version: settled (4 per host, round robin)


def kill_point(phase: str, event: Event) -> bool:
    """Where the worker dies: stage as a colour is being started, the switch right as it
    starts, the stability window at its second interval."""
    if event.phase != phase:
        return False
    if phase == "stage":
        return event.kind == Kind.step
    if phase == "switch":
        return event.kind == Kind.phase_started
    return isinstance(event, Metrics) and event.interval >= 2


@dataclass
class Trial:
    phase: str
    took: float | None  # SIGKILL -> recovered, in the stream, settled; None: not within bounds
    noticed: float | None  # SIGKILL -> the takeover's warning in the stream
    failed: int  # failed requests under load, the whole trial
    left_on: str  # the version the public URL settled on ("?" when it did not)
    outcome: str  # the engine's outcome after the takeover (rolled_back, not_switched...)
    served: str  # the versions the load saw during the trial, with their counts
    problems: list[str]

    def line(self) -> str:
        took = f"{self.took:6.2f} s" if self.took is not None else "   never"
        noticed = f"{self.noticed:.2f} s" if self.noticed is not None else "never"
        text = f"  {self.phase:<8} {took}  takeover in the stream after {noticed}; "
        text += f"left on {self.left_on} ({self.outcome}); {self.failed} failed requests, "
        text += f"served {self.served}"
        return text + "".join(f"\n      PROBLEM: {p}" for p in self.problems)


class Follower:
    """One deployment's events from the stream, read after a given entry."""

    def __init__(self, connection: redis.Redis, deployment: str, after: str) -> None:
        self.connection = connection
        self.deployment = deployment
        self.after = after

    def poll(self, block_ms: int) -> list[Event]:
        found = []
        for entry, event in read_events(self.connection, after=self.after, block_ms=block_ms):
            self.after = entry
            if event.deployment == self.deployment:
                found.append(event)
        return found

    def until(self, wanted: Callable[[Event], bool], within: float) -> Event:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for event in self.poll(block_ms=200):
                if wanted(event):
                    return event
                if isinstance(event, DeployFinished):
                    raise RuntimeError(f"{self.deployment} ended {event.outcome} first")
        raise RuntimeError(f"{self.deployment}: no kill point within {within:g} s")


def session_groups(session: int) -> set[int]:
    """The process groups of the live (not zombie) processes of a session."""
    groups = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        state, _ppid, pgrp, sid = stat.rsplit(")", 1)[1].split()[:4]
        if int(sid) == session and state != "Z":
            groups.add(int(pgrp))
    return groups


def kill_session(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process group of the worker's session, until none is left."""
    for _ in range(20):
        groups = session_groups(worker.pid)
        if not groups:
            worker.wait(timeout=10)
            return
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        time.sleep(0.05)
    raise RuntimeError(f"worker session {worker.pid} still has processes after SIGKILL")


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """A warm shutdown (the job in hand finishes); SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.wait(timeout=30)
    kill_session(worker)


def answers(url: str, count: int) -> list[str]:
    """The version (or the failure) of `count` requests to the URL, one after another."""
    seen = []
    with httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0)) as http:
        for _ in range(count):
            try:
                response = http.get(url)
            except httpx.HTTPError as exc:
                seen.append(type(exc).__name__)
                continue
            version = response.headers.get(VERSION_HEADER, "")
            seen.append(version if response.status_code == 200 else f"{response.status_code}")
    return seen


@dataclass
class Recovery:
    took: float | None
    noticed: float | None
    final_at: float | None  # SIGKILL -> the record seen final
    left_on: str
    problems: list[str]
    outcome: str = "?"


def watch_recovery(
    connection: redis.Redis, follower: Follower, url: str, killed: float, killed_wall: float
) -> Recovery:
    """Poll the record, the stream and the public URL until all three say recovered."""
    store = RecordStore(connection)
    noticed: float | None = None
    finished: DeployFinished | None = None
    final_at: float | None = None
    deadline = killed + UP_TO_RECOVERY
    seen: list[str] = []
    announced = False  # the request's own "recovered" event, after the engine's finish
    while time.monotonic() < deadline:
        for event in follower.poll(block_ms=200):
            if event.kind == Kind.warning and event.phase == "recovery" and noticed is None:
                noticed = event.at - killed_wall
            if isinstance(event, DeployFinished) and noticed is not None:
                finished = event
            if event.kind == Kind.request and event.state == "recovered":
                announced = True
        record = store.load(follower.deployment)
        assert record is not None
        if not record.final:
            continue
        if final_at is None:
            final_at = time.monotonic() - killed
        if record.state != "recovered":
            return Recovery(None, noticed, final_at, "?", [f"the record ended {record.state}"])
        if finished is None or not announced:
            continue  # the record says recovered before the stream does
        engine = record.deployment
        assert engine is not None
        expected = {"live": NEW, "rolled_back": OLD, "not_switched": OLD}.get(engine.outcome)
        if expected is None:
            return Recovery(None, noticed, final_at, "?", [f"the takeover left {engine.outcome}"])
        seen = answers(url, PROBES)
        if seen == [expected] * PROBES:
            took = time.monotonic() - killed
            return Recovery(took, noticed, final_at, expected, [], engine.outcome)
        time.sleep(0.1)
    return Recovery(
        None,
        noticed,
        final_at,
        "?",
        [
            f"not recovered within {UP_TO_RECOVERY:g} s: record final "
            f"{'never' if final_at is None else f'at {final_at:.1f} s'}, "
            f"takeover finished in the stream: {finished is not None}, last answers {seen}"
        ],
    )


def leftovers(connection: redis.Redis, deployment: str) -> list[str]:
    """What a recovered deployment should not leave behind: its lease, a job queued,
    started or failed. Waits (bounded) for the recovery job to leave the started list."""
    q = queue(connection)
    started = StartedJobRegistry(queue=q)
    deadline = time.monotonic() + 30
    while started.get_job_ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    found = []
    holder = Lease(connection, "sample", "production").holder()
    if holder is not None:
        found.append(f"lease still held by {holder.deployment}")
    if q.count:
        found.append(f"{q.count} jobs still queued: {q.job_ids}")
    for registry in (started, FailedJobRegistry(queue=q)):
        if ids := registry.get_job_ids():
            found.append(f"{type(registry).__name__}: {ids} ({deployment})")
    return found


def crash_and_recover(connection: redis.Redis, config: Path, url: str, phase: str, n: int) -> Trial:
    """One trial: request, SIGKILL at the kill point, a fresh worker, recovery measured."""
    logs = WORK / f"worker-{phase}-{n}"
    worker = start_worker(config, REDIS_URL, logs.with_suffix(".doomed.log"))
    survivor: subprocess.Popen[bytes] | None = None
    try:
        with load_at(url, f"recovery-{phase}-{n}", duration=600) as running:
            time.sleep(LOAD_FIRST)
            since = last_event_id(connection)
            answer = request_deployment(
                connection, load_specs(config), app=None, env=None, version=NEW, who=WHO
            )
            if answer.result != "accepted" or answer.deployment is None:
                raise RuntimeError(f"the request was refused: {answer.reason}")
            follower = Follower(connection, answer.deployment, since)
            follower.until(lambda event: kill_point(phase, event), UP_TO_KILL)
            killed, killed_wall = time.monotonic(), time.time()
            kill_session(worker)
            survivor = start_worker(config, REDIS_URL, logs.with_suffix(".survivor.log"))
            recovery = watch_recovery(connection, follower, url, killed, killed_wall)
            time.sleep(HOLD_AFTER)
            result = running.stop()
        problems = recovery.problems + stray_answers(result, recovery, killed_wall)
        problems += leftovers(connection, answer.deployment)
    finally:
        kill_session(worker)
        if survivor is not None:
            stop_worker(survivor)
    served = ", ".join(f"{v or '-'} x{n}" for v, n in sorted(result.versions.items()))
    return Trial(
        phase,
        recovery.took,
        recovery.noticed,
        len(result.failures),
        recovery.left_on,
        recovery.outcome,
        served,
        problems,
    )


def stray_answers(result: LoadResult, recovery: Recovery, killed_wall: float) -> list[str]:
    """Answers of another version than the settled one, sent after the record was final."""
    if recovery.final_at is None or recovery.left_on == "?":
        return []
    after = result.after(killed_wall + recovery.final_at)
    stray = [s for s in after if s.version != recovery.left_on]
    if not stray:
        return []
    return [
        f"{len(stray)} of {len(after)} answers after the record was final were not "
        f"{recovery.left_on}: {sorted({s.version or s.error for s in stray})}"
    ]


async def run(report: Report) -> None:
    print(
        f"8. crash recovery: worker SIGKILLed in {', '.join(PHASES)} "
        f"({TRIALS} trials each, {len(HOSTS)} hosts, 16 clients on the public URL)"
    )
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    first = spec(HOSTS, "recovery-first", **FAST, **UNAPPROVED)
    url = first.environment(None).public_url
    configs = {}
    for phase in PHASES:
        window = WINDOW if phase == "monitor" else FAST["stability"]
        spec(HOSTS, f"recovery-{phase}", drain=0.5, stability=window, **UNAPPROVED)
        configs[phase] = WORK / f"recovery-{phase}.yml"
    trials: dict[str, list[Trial]] = {phase: [] for phase in PHASES}
    try:
        for n in range(TRIALS):
            for phase in PHASES:  # interleaved: a drift of the machine hits every phase alike
                fresh()
                connection.flushdb()
                await deploy_ok(first, OLD)
                try:
                    trial = await asyncio.to_thread(
                        crash_and_recover, connection, configs[phase], url, phase, n
                    )
                except RuntimeError as exc:  # no kill point, a refused request: no figure
                    trial = Trial(phase, None, None, 0, "?", "?", "-", [f"trial aborted: {exc}"])
                trials[phase].append(trial)
                print(trial.line(), flush=True)
    finally:
        connection.close()
    table(trials)
    for phase, done in trials.items():
        add_figures(report, phase, done)


def table(trials: dict[str, list[Trial]]) -> None:
    """The phases side by side."""

    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f}"

    def row(label: str, cell: Callable[[list[Trial]], str]) -> None:
        print(f"  {label:<44}" + "".join(f"{cell(done):>14}" for done in trials.values()))

    print()
    row("killed in", lambda done: done[0].phase if done else "-")
    row("SIGKILL -> recovered, max (s)", lambda done: seconds(worst(done)))
    row("SIGKILL -> recovered, median (s)", lambda done: seconds(middle(done)))
    row(
        "SIGKILL -> takeover in the stream, max (s)",
        lambda done: seconds(
            None if any(t.noticed is None for t in done) else max(t.noticed or 0 for t in done)
        ),
    )
    row(f"trials recovered within {TARGET:g} s", lambda done: f"{len(within(done))}/{len(done)}")
    row("failed requests under load", lambda done: str(sum(t.failed for t in done)))
    row("production left on", lambda done: ",".join(sorted({t.left_on for t in done})))
    row("the takeover's outcome", lambda done: ",".join(sorted({t.outcome for t in done})))
    print()


def worst(done: list[Trial]) -> float | None:
    """The slowest trial; None when one never recovered."""
    took = [t.took for t in done]
    return None if not took or None in took else max(t for t in took if t is not None)


def middle(done: list[Trial]) -> float | None:
    took = [t.took for t in done if t.took is not None]
    return median(took) if len(took) == len(done) and took else None


def within(done: list[Trial]) -> list[Trial]:
    return [t for t in done if t.took is not None and t.took <= TARGET and not t.problems]


def add_figures(report: Report, phase: str, done: list[Trial]) -> None:
    runs = ", ".join("never" if t.took is None else f"{t.took:.2f}" for t in done)
    slowest = worst(done)
    report.add(
        Figure(
            "recovery",
            f"killed in {phase}: SIGKILL -> recovered and settled, max of {len(done)}",
            float("nan") if slowest is None else slowest,
            "s",
            f"<= {TARGET:g} s",
            len(within(done)) == len(done),
            f"runs: {runs}",
        )
    )
    typical = middle(done)
    report.add(
        Figure(
            "recovery",
            f"killed in {phase}: SIGKILL -> recovered and settled, median of {len(done)}",
            float("nan") if typical is None else typical,
            "s",
        )
    )
    failed = sum(t.failed for t in done)
    report.add(
        Figure(
            "recovery",
            f"killed in {phase}: failed requests under load, {len(done)} trials",
            failed,
            "req",
            "0",
            failed == 0,
            "per trial: " + ", ".join(str(t.failed) for t in done),
        )
    )
