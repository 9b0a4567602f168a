"""6. Hosts with years of history: deploy and rollback wall times on hosts carrying 500
recorded versions and 2,000 history lines, beside the same on fresh hosts, in one run.

A host's state read stays small whatever its age (bad versions by name, the last few
releases and lines), so the two should be within noise of each other.
"""

from __future__ import annotations

import time

import testbed
from bench.common import FAST, WHO, Figure, Report, deploy_ok, fresh, median, spec, timed_deploy
from deploy.events import ListSink
from deploy.pipeline import rollback

HOSTS = ["h1", "h2", "h3"]
RUNS = 3


async def measure(seeded: bool) -> tuple[float, float]:
    fresh()
    if seeded:
        testbed.hosts.seed_history(HOSTS, verdicts=500, history=2000)
    quick = spec(HOSTS, f"volume-{seeded}", **FAST)
    await deploy_ok(quick, "v1.0.0")
    record, deploy_wall, _ = await timed_deploy(quick, "v1.0.1")
    assert record.outcome == "live", record.failure
    started = time.monotonic()
    back = await rollback(quick, None, WHO, ListSink())
    assert back.outcome == "live", back.failure
    return deploy_wall, time.monotonic() - started


async def run(report: Report) -> None:
    print("6. deploy and rollback on hosts with years of history vs fresh hosts (3 hosts)")
    walls: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(RUNS):  # interleaved, so drift on the machine hits both alike
        for seeded in (False, True):
            walls[seeded].append(await measure(seeded))
    for seeded, label in ((False, "fresh hosts"), (True, "500 versions, 2,000 history lines")):
        deploys = [d for d, _ in walls[seeded]]
        rollbacks = [r for _, r in walls[seeded]]
        report.add(
            Figure(
                "volume",
                f"deploy, {label}, median of {RUNS}",
                median(deploys),
                "s",
                detail="runs: " + ", ".join(f"{d:.2f}" for d in deploys),
            )
        )
        report.add(
            Figure(
                "volume",
                f"rollback, {label}, median of {RUNS}",
                median(rollbacks),
                "s",
                detail="runs: " + ", ".join(f"{r:.2f}" for r in rollbacks),
            )
        )
    ratio = median([d for d, _ in walls[True]]) / median([d for d, _ in walls[False]])
    report.add(Figure("volume", "deploy, seeded / fresh", ratio, "x", "<= 1.1x", ratio <= 1.1))
