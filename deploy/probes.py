"""HTTP probes: health checks, smoke requests, switch confirmation, stability metrics.

Each check is a pure function over a `Probe` (status, headers, body, latency), so
what counts as healthy is unit-testable; the async functions only fetch.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel

from deploy.errors import ProbeFailed, WrongColour
from deploy.spec import HealthSpec, SmokeRequest, StabilitySpec

__all__ = ["Probe", "ProbeFailed", "WrongColour"]

USER_AGENT = "greenlight-probe/1"
STILL_STARTING_EVERY = 2.0


@dataclass(frozen=True)
class Probe:
    url: str
    status: int | None  # None: no HTTP answer at all
    latency: float
    version: str | None = None
    body: str = ""
    error: str | None = None
    # When the answer (or the error) came, wall clock: detection latency starts here.
    at: float = field(default_factory=time.time)

    @property
    def summary(self) -> str:
        if self.status is None:
            return f"{self.url}: {self.error or 'no answer'}"
        return f"{self.url}: HTTP {self.status} in {self.latency * 1000:.0f} ms"


@functools.cache
def tls() -> ssl.SSLContext:
    """One verifying TLS context for every client: building one costs ~20 ms of CPU,
    and a deploy opens a client per probe loop per host."""
    return httpx.create_ssl_context()


def warm_up() -> None:
    """Do now what a process's first probe would: build the TLS context and import what
    httpx loads on its first request (httpcore, h11, anyio's asyncio backend). That is
    ~100 ms of CPU per process; a worker does it once before forking its work horses,
    which inherit both, instead of paying it in every phase job that probes."""
    import anyio._backends._asyncio  # noqa: F401
    import h11  # noqa: F401
    import httpcore._backends.anyio  # noqa: F401

    tls()


def client(timeout: float, *, keepalive: bool = True) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_keepalive_connections=20 if keepalive else 0),
        verify=tls(),
    )


async def fetch(
    http: httpx.AsyncClient,
    url: str,
    *,
    version_header: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    shown: str | None = None,
) -> Probe:
    """One request; `shown` is the URL reports name (a tunnel's local port means nothing)."""
    started = time.monotonic()
    try:
        response = await http.request(method, url, headers=headers)
    except httpx.HTTPError as exc:
        return Probe(shown or url, None, time.monotonic() - started, error=_error(exc))
    return Probe(
        shown or url,
        response.status_code,
        time.monotonic() - started,
        response.headers.get(version_header),
        response.text[:4096],
    )


# -- pure checks ------------------------------------------------------------------


def check_version(probe: Probe, expected: str | None) -> None:
    """WrongColour when a probe aimed at one colour is answered by another version:
    the port belongs to another container (ports swapped in the spec, say)."""
    if expected is None or probe.version is None or probe.version == expected:
        return
    raise WrongColour(
        f"{probe.url} answered as {probe.version}, not {expected}: another container "
        "holds this colour's port (check `ports` in the spec)",
        [probe],
    )


def health_problem(probe: Probe, spec: HealthSpec) -> str | None:
    if probe.status != 200:
        return probe.summary
    for key, expected in spec.expect_json.items():
        body = _json(probe.body)
        if not isinstance(body, dict) or body.get(key) != expected:
            return f"{probe.url}: body lacks {key}={expected!r}"
    return None


def smoke_problem(probe: Probe, request: SmokeRequest) -> str | None:
    if probe.status is None:
        return probe.summary
    if probe.status >= 500:
        return f"{request.path}: server error {probe.status}"
    if probe.status not in request.expect:
        return f"{request.path}: HTTP {probe.status}, expected {_statuses(request.expect)}"
    if probe.latency > request.max_latency:
        return (
            f"{request.path}: took {probe.latency * 1000:.0f} ms, "
            f"bound is {request.max_latency * 1000:.0f} ms"
        )
    if request.contains is not None and request.contains not in probe.body:
        return f"{request.path}: body does not contain {request.contains!r}"
    if request.json_key is not None:
        body = _json(probe.body)
        if not isinstance(body, dict) or request.json_key not in body:
            return f"{request.path}: JSON body has no {request.json_key!r} key"
    return None


def stability_error(probe: Probe) -> bool:
    return probe.status is None or probe.status >= 500


class Figures(BaseModel):
    """What the stability window saw: per interval, or in all."""

    requests: int
    errors: int
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    versions: dict[str, int]
    elapsed: float = 0.0


@dataclass
class IntervalMetrics:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    first_error_at: float | None = None

    def add(self, probe: Probe) -> None:
        self.requests += 1
        self.latencies.append(probe.latency)
        if probe.version:
            self.versions[probe.version] = self.versions.get(probe.version, 0) + 1
        if stability_error(probe):
            self.errors += 1
            self.failures.append(probe.summary)
            if self.first_error_at is None or probe.at < self.first_error_at:
                self.first_error_at = probe.at

    def figures(self, elapsed: float = 0.0) -> Figures:
        return Figures(
            requests=self.requests,
            errors=self.errors,
            error_rate=round(self.errors / self.requests, 4) if self.requests else 0.0,
            p50_ms=_ms(percentile(self.latencies, 50)),
            p95_ms=_ms(percentile(self.latencies, 95)),
            p99_ms=_ms(percentile(self.latencies, 99)),
            versions=dict(self.versions),
            elapsed=elapsed,
        )


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def stability_verdict(total: IntervalMetrics, spec: StabilitySpec) -> str | None:
    """Why the window so far is unstable, or None while within every threshold."""
    if total.errors > spec.max_errors:
        return f"{total.errors} errors, more than the {spec.max_errors} allowed"
    if total.requests and total.errors / total.requests > spec.max_error_rate:
        return f"error rate {total.errors / total.requests:.1%} is above {spec.max_error_rate:.1%}"
    p95 = percentile(total.latencies, 95)
    if len(total.latencies) >= 5 and p95 > spec.max_latency:
        return f"p95 latency {p95 * 1000:.0f} ms is above {spec.max_latency * 1000:.0f} ms"
    return None


# -- probing loops ----------------------------------------------------------------


async def wait_healthy(
    base: str,
    spec: HealthSpec,
    version_header: str,
    *,
    expect_version: str | None = None,
    still_starting: Callable[[], Awaitable[None]] | None = None,
    shown: str | None = None,
) -> list[Probe]:
    """Poll until `successes` consecutive healthy answers.

    ProbeFailed at the deadline, or at once when the app has answered unhealthy
    `spec.failures` times in a row. While nothing answers at all, `still_starting` is
    called every couple of seconds so the caller can notice a container that died.
    """
    started = time.monotonic()
    deadline = started + spec.deadline
    streak: list[Probe] = []
    unhealthy = 0
    looked = started
    async with client(spec.timeout) as http:
        while True:
            last = await fetch(
                http,
                base + spec.path,
                version_header=version_header,
                shown=(shown or base) + spec.path,
            )
            check_version(last, expect_version)
            problem = health_problem(last, spec)
            streak = [] if problem else [*streak, last]
            if len(streak) >= spec.successes:
                return streak
            unhealthy = unhealthy + 1 if problem and last.status is not None else 0
            if unhealthy >= spec.failures:
                raise ProbeFailed(f"unhealthy: {problem} ({unhealthy} answers in a row)", [last])
            now = time.monotonic()
            if last.status is None and still_starting and now - looked >= STILL_STARTING_EVERY:
                looked = now
                await still_starting()
            if now + spec.interval > deadline:
                raise ProbeFailed(
                    f"not healthy within {spec.deadline:g} s: {problem or last.summary}", [last]
                )
            await asyncio.sleep(spec.interval)


async def smoke(
    base: str,
    requests: Sequence[SmokeRequest],
    version_header: str,
    timeout: float = 10.0,
    shown: str | None = None,
    expect_version: str | None = None,
) -> list[Probe]:
    """Every smoke request once; ProbeFailed lists every request that failed."""
    async with client(timeout) as http:
        probes = [
            await fetch(
                http,
                base + r.path,
                version_header=version_header,
                method=r.method,
                headers=r.headers,
                shown=(shown or base) + r.path,
            )
            for r in requests
        ]
    for probe in probes:
        check_version(probe, expect_version)
    found = (smoke_problem(probe, r) for r, probe in zip(requests, probes, strict=True))
    problems = [p for p in found if p]
    if problems:
        raise ProbeFailed("; ".join(problems), probes)
    return probes


async def confirm_version(
    url: str, version_header: str, version: str, *, successes: int, settle: float, timeout: float
) -> float:
    """Poll until answers carry the version for `settle` seconds and `successes` answers
    in a row; seconds from the first probe to the first answer of the version.

    Every probe opens a new connection, as a new visitor would: after a reload, nginx
    keeps its old workers accepting connections for about 100 ms, so one kept-alive
    connection to a new worker proves nothing about the next visitor.
    """
    started = time.monotonic()
    first_seen: float | None = None
    streak = 0
    last: Probe | None = None
    async with client(min(timeout, 2.0), keepalive=False) as http:
        while True:
            last = await fetch(http, url, version_header=version_header)
            now = time.monotonic()
            if last.version == version and last.status == 200:
                streak += 1
                first_seen = first_seen if first_seen is not None else now
            else:
                streak, first_seen = 0, None
            if first_seen is not None and streak >= successes and now - first_seen >= settle:
                return first_seen - started
            if now - started > timeout:
                seen = last.version or last.summary
                raise ProbeFailed(
                    f"{url} did not confirm {version} within {timeout:g} s (last answer: {seen})",
                    [last],
                )
            await asyncio.sleep(0.02)


async def answering_version(url: str, version_header: str, samples: int = 3) -> str | None:
    """The version a new visitor gets now: the most common of a few fresh-connection
    answers (None when nothing answers with a version)."""
    seen: dict[str | None, int] = {}
    async with client(2.0, keepalive=False) as http:
        for _ in range(samples):
            probe = await fetch(http, url, version_header=version_header)
            version = probe.version if probe.status is not None and probe.status < 500 else None
            seen[version] = seen.get(version, 0) + 1
            await asyncio.sleep(0.02)
    return max(seen, key=lambda v: seen[v])


async def stability_window(
    urls: Sequence[str],
    spec: StabilitySpec,
    version_header: str,
    on_interval: Callable[[int, Figures], Awaitable[None]],
) -> IntervalMetrics:
    """Probe every url and path each interval for the window's duration.

    Returns the window's totals, or raises ProbeFailed as soon as a threshold trips,
    so a broken release is noticed within one interval of its first error.
    """
    total = IntervalMetrics()
    started = time.monotonic()
    index = 0
    async with client(spec.timeout) as http:
        while True:
            index += 1
            tick = time.monotonic()
            interval = IntervalMetrics()
            probes = await asyncio.gather(
                *(
                    fetch(http, url + path, version_header=version_header)
                    for url in urls
                    for path in spec.paths
                )
            )
            for probe in probes:
                interval.add(probe)
                total.add(probe)
            figures = interval.figures(elapsed=round(time.monotonic() - started, 2))
            await on_interval(index, figures)
            verdict = stability_verdict(total, spec)
            if verdict:
                raise ProbeFailed(
                    f"unstable: {verdict}",
                    [p for p in probes if stability_error(p)],
                    first_error_at=total.first_error_at,
                )
            if time.monotonic() - started >= spec.duration:
                return total
            await asyncio.sleep(max(0.0, spec.interval - (time.monotonic() - tick)))


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _statuses(codes: Sequence[int]) -> str:
    return " or ".join(str(c) for c in codes)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _error(exc: httpx.HTTPError) -> str:
    kind = type(exc).__name__
    return {
        "ConnectError": "connection refused",
        "ReadTimeout": "timed out",
        "ConnectTimeout": "connect timed out",
        "RemoteProtocolError": "connection closed without answer",
    }.get(kind, kind)
