"""4. Engine overhead: a deploy's wall time minus what the app itself needs.

The app's time is measured, not estimated: every command is timed by a wrapper around
the executor, and so are the probing loops (health, smoke, stability window), whose
length the spec configures. Pull, container start to healthy, hooks, dependency
checks, stopping the old colour and the probing loops count as the app's; everything
else (registry lookup, SSH round trips for facts, lock, state and records, tunnels,
the proxy switch and its confirmation, event handling) is the engine's overhead.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import deploy.context
from bench.common import FAST, Figure, Report, deploy_ok, fresh, median, spec, timed_deploy
from deploy import probes
from deploy.commands import Command
from deploy.executor import Executor, Result

RUNS = 3
APP_STEPS = ("pull ", "start ", "stop ", "tear down ")
spent: dict[str, float] = defaultdict(float)


def category(cmd: Command) -> str | None:
    if cmd.step.endswith(" hook"):
        return "hooks"
    for prefix in APP_STEPS:
        if cmd.step.startswith(prefix):
            return prefix.strip()
    return None


class Timed:
    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.name = inner.name

    async def run(self, cmd: Command, **kw: Any) -> Result:
        started = time.monotonic()
        try:
            return await self.inner.run(cmd, **kw)
        finally:
            what = category(cmd)
            if what:
                spent[what] += time.monotonic() - started

    def tunnel(self, address: str, port: int) -> Any:
        return self.inner.tunnel(address, port)

    async def close(self) -> None:
        await self.inner.close()


def timed_probe(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kw: Any) -> Any:
        started = time.monotonic()
        try:
            return await fn(*args, **kw)
        finally:
            spent[name] += time.monotonic() - started

    return wrapper


def instrument() -> None:
    original = deploy.context.executor_for
    deploy.context.executor_for = lambda host, ssh: Timed(original(host, ssh))  # type: ignore[assignment]
    probes.wait_healthy = timed_probe("health checks", probes.wait_healthy)  # type: ignore[assignment]
    probes.smoke = timed_probe("smoke requests", probes.smoke)  # type: ignore[assignment]
    probes.stability_window = timed_probe("stability window", probes.stability_window)  # type: ignore[assignment]


async def run(report: Report) -> None:
    print("4. engine overhead per deploy (wall time minus the app's own time)")
    instrument()
    quick = spec(["h1"], "overhead-setup", **FAST)
    measured = spec(["h1"], "overhead", stability={"duration": 2, "interval": 0.5}, drain=0)
    overheads = []
    breakdown: dict[str, float] = {}
    for i in range(RUNS):
        fresh()
        await deploy_ok(quick, "v1.0.0")
        spent.clear()
        record, wall, _ = await timed_deploy(measured, "v1.0.1")
        assert record.outcome == "live", record.failure
        app = sum(spent.values())
        overheads.append(wall - app)
        if i == RUNS - 1:
            breakdown = dict(spent) | {"wall": wall}
    value = median(overheads)
    detail = ", ".join(f"{k} {v:.2f}s" for k, v in breakdown.items())
    report.add(
        Figure(
            "overhead",
            f"engine overhead per deploy, median of {RUNS}",
            value,
            "s",
            "<= 1.5 s",
            value <= 1.5,
            f"last run: {detail}; runs: " + ", ".join(f"{o:.3f}" for o in overheads),
        )
    )
