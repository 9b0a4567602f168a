"""2. Rollback time: from the decision (the call) to the first response of the previous
version through the proxy, with the previous colour warm and with it stopped."""

from __future__ import annotations

from bench.common import (
    FAST,
    Figure,
    Report,
    deploy_ok,
    fresh,
    load,
    median,
    spec,
    timed_rollback,
)
from deploy.commands import compose
from deploy.commands.layout import Slot, layout_for
from deploy.executor import executor_for
from deploy.spec import Spec
from deploy.status import collect_status

RUNS = 3


async def warm_previous(spec_: Spec) -> None:
    """Start the stopped previous colour, as it is during the drain window or a warm standby."""
    env = spec_.environment(None)
    host = env.hosts[0]
    status = await collect_status(spec_, None)
    idle = next(c for c, r in status["hosts"][0]["colors"].items() if r["status"] == "stopped")
    record = status["hosts"][0]["colors"][idle]
    image = f"{spec_.image}@{record['digest']}"
    slot = Slot(
        layout_for(spec_, env), host, idle, env.ports.of(idle), image, record["version"], "bench"
    )
    executor = executor_for(host, env.ssh)
    try:
        await executor.run(compose.up(slot, 60))
    finally:
        await executor.close()


async def measure(spec_: Spec, name: str, warm: bool) -> float:
    await deploy_ok(spec_, "v1.0.1")
    if warm:
        await warm_previous(spec_)
    with load("h1", name) as running:
        record, decided = await timed_rollback(spec_)
        result = running.stop()
    assert record.outcome == "live", record.failure
    assert not result.failures, result.describe()
    first = result.first("v1.0.0", after=decided)
    assert first is not None, result.describe()
    return first.end - decided


async def run(report: Report) -> None:
    print("2. rollback time, decision to first response of the previous version")
    quick = spec(["h1"], "rollback", **FAST)
    fresh()
    await deploy_ok(quick, "v1.0.0")
    for warm, target in [(True, 1.0), (False, 5.0)]:
        times = [await measure(quick, f"rollback-{warm}-{i}", warm) for i in range(RUNS)]
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
