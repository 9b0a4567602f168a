"""1. Failed requests while a new version takes over and while it is rolled back:
Greenlight's blue-green switch against the seed's stop-then-start, side by side."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import testbed
from bench.common import FAST, Figure, Report, deploy_ok, fresh, hold_until, load, spec
from bench.seed import stop_then_start
from deploy.events import ListSink
from deploy.pipeline import rollback
from testbed.load import LoadResult

WINDOW = 30.0  # seconds of load around each operation, at least


async def under_load(name: str, operation: Callable[[], Awaitable[None]]) -> LoadResult:
    with load("h1", name) as running:
        started = time.monotonic()
        await hold_until(started, 3)
        await operation()
        await hold_until(started, WINDOW)
        return running.stop()


async def run(report: Report) -> None:
    print("1. failed requests during a switch and a rollback (16 clients, >= 30 s each)")
    images = testbed.load_info()["images"]
    old = (images["v1.0.0"]["ref"], "v1.0.0")
    new = (images["v1.0.1"]["ref"], "v1.0.1")
    quick = spec(["h1"], "switch", **FAST)

    fresh()
    await deploy_ok(quick, "v1.0.0")
    seed_deploy = await under_load("seed-deploy", lambda: stop_then_start(quick, old, new))
    seed_rollback = await under_load("seed-rollback", lambda: stop_then_start(quick, new, old))

    fresh()
    await deploy_ok(quick, "v1.0.0")

    async def greenlight_deploy() -> None:
        await deploy_ok(quick, "v1.0.1")

    async def greenlight_rollback() -> None:
        record = await rollback(quick, None, "bench", ListSink())
        assert record.outcome == "live", record.failure

    ours_deploy = await under_load("greenlight-deploy", greenlight_deploy)
    ours_rollback = await under_load("greenlight-rollback", greenlight_rollback)

    for label, result, target in [
        ("seed stop-then-start: failed requests during deploy", seed_deploy, ""),
        ("greenlight blue-green: failed requests during deploy", ours_deploy, "0"),
        ("seed stop-then-start: failed requests during rollback", seed_rollback, ""),
        ("greenlight: failed requests during rollback", ours_rollback, "0"),
    ]:
        failed = len(result.failures)
        outage = _outage(result)
        report.add(
            Figure(
                "switch",
                label,
                failed,
                "req",
                target,
                failed == 0 if target else None,
                f"{result.describe()}; longest run of failures {outage:.2f} s",
            )
        )


def _outage(result: LoadResult) -> float:
    failures = result.failures
    if not failures:
        return 0.0
    return max(s.end for s in failures) - min(s.start for s in failures)
