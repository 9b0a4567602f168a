"""2. Rollback time: from the decision (the call) to the first response of the previous
version through the proxy, with the previous colour kept warm and with it stopped."""

from __future__ import annotations

import time

from bench.common import (
    FAST,
    Figure,
    Report,
    deploy_ok,
    fresh,
    hold_until,
    load,
    median,
    spec,
    timed_rollback,
)
from deploy.spec import Spec

RUNS = 5
SETTLE = 2.0


async def measure(spec_: Spec, name: str) -> float:
    await deploy_ok(spec_, "v1.0.1")
    with load("h1", name) as running:
        # Decide once the load is flowing: its clients must be there to see the first
        # answer, and their start-up must not share the CPU with the rollback.
        await hold_until(time.monotonic(), SETTLE)
        record, decided = await timed_rollback(spec_)
        result = running.stop()
    assert record.outcome == "live", record.failure
    assert not result.failures, result.describe()
    first = result.first("v1.0.0", after=decided)
    assert first is not None, result.describe()
    return first.end - decided


async def run(report: Report) -> None:
    print("2. rollback time, decision to first response of the previous version")
    for warm, target in [(True, 0.5), (False, 5.0)]:
        # The engine keeps the previous release warm after a deploy (`keep_previous`);
        # with 0 it stops it at once and a rollback has to start it first.
        quick = spec(["h1"], f"rollback-{warm}", keep_previous=3600 if warm else 0, **FAST)
        fresh()
        await deploy_ok(quick, "v1.0.0")
        times = [await measure(quick, f"rollback-{warm}-{i}") for i in range(RUNS)]
        label = "warm (previous colour running)" if warm else "stopped (previous colour started)"
        value = median(times)
        report.add(
            Figure(
                "rollback",
                f"rollback, {label}, median of {RUNS}",
                value,
                "s",
                f"<= {target:g} s",
                value <= target,
                "runs: " + ", ".join(f"{t:.3f}" for t in times),
            )
        )
