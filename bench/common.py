"""What every benchmark needs: the bed, spec variants, in-process runs, figures."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import testbed
from deploy.deployment import Deployment
from deploy.events import ListSink
from deploy.pipeline import deploy, rollback
from deploy.spec import Spec, load_spec
from testbed import specs
from testbed.load import Load

WORK = Path(tempfile.mkdtemp(prefix="greenlight-bench-"))
FAST = {"stability": {"duration": 1, "interval": 0.5}, "drain": 0.5}
WHO = "bench"
# The generated spec has production wait for a second person's approval; the benchmarks
# that queue production deployments measure the workers, not people, and say so with this.
UNAPPROVED = {"approval": "none"}


@dataclass
class Figure:
    bench: str
    name: str
    value: float | int
    unit: str
    target: str = ""
    ok: bool | None = None
    detail: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        mark = "" if figure.ok is None else ("  ok" if figure.ok else "  MISSED")
        target = f"  (target {figure.target})" if figure.target else ""
        value = f"{figure.value:.3f}" if isinstance(figure.value, float) else str(figure.value)
        print(f"  {figure.name:<58} {value:>9} {figure.unit:<4}{target}{mark}", flush=True)
        if figure.detail:
            print(f"      {figure.detail}", flush=True)
        return figure


def spec(hosts: Sequence[str], name: str, **overrides: Any) -> Spec:
    return load_spec(specs.variant(tuple(hosts), WORK / f"{name}.yml", **overrides))


def fresh() -> None:
    """Every host of the bed back to empty: no leftover containers competing for the CPU."""
    testbed.hosts.reset()


async def deploy_ok(spec_: Spec, version: str) -> Deployment:
    record = await deploy(spec_, None, version, WHO, ListSink())
    if record.outcome != "live":
        raise SystemExit(f"bench setup: deploy {version} ended {record.outcome}: {record.failure}")
    return record


async def timed_deploy(spec_: Spec, version: str) -> tuple[Deployment, float, ListSink]:
    sink = ListSink()
    started = time.monotonic()
    record = await deploy(spec_, None, version, WHO, sink)
    return record, time.monotonic() - started, sink


async def timed_rollback(spec_: Spec) -> tuple[Deployment, float]:
    started = time.time()
    record = await rollback(spec_, None, WHO, ListSink())
    return record, started


def load(host: str, name: str, clients: int = 16, duration: float = 120) -> Load:
    """Traffic through one host's own proxy."""
    return load_at(specs.proxy_url(host), name, clients, duration)


def load_at(url: str, name: str, clients: int = 16, duration: float = 120) -> Load:
    """Traffic to a URL of the bed (a host's proxy, or the public load balancer)."""
    return Load(
        url.rstrip("/") + "/",
        WORK / f"load-{name}.csv",
        clients=clients,
        duration=duration,
        pause=0.005,
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def hold_until(started: float, at_least: float) -> None:
    """Keep the load running until it has lasted `at_least` seconds."""
    remaining = at_least - (time.monotonic() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)
