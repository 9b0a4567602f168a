"""What counts as healthy, smoke-clean and stable: pure checks over probe results."""

import pytest

from deploy.errors import WrongColour
from deploy.probes import (
    IntervalMetrics,
    Probe,
    check_version,
    health_problem,
    percentile,
    smoke_problem,
    stability_verdict,
)
from deploy.spec import HealthSpec, SmokeRequest, StabilitySpec


def probe(status: int | None, latency: float = 0.01, body: str = "", version: str = "v1") -> Probe:
    return Probe("http://h/x", status, latency, version, body, None if status else "refused")


def test_health_needs_200_and_the_expected_json() -> None:
    spec = HealthSpec(path="/api/health/", expect_json={"status": "ok"})
    assert health_problem(probe(200, body='{"status": "ok"}'), spec) is None
    assert "lacks status='ok'" in str(
        health_problem(probe(200, body='{"status": "degraded"}'), spec)
    )
    assert "HTTP 500" in str(health_problem(probe(500), spec))
    assert "refused" in str(health_problem(probe(None), spec))


@pytest.mark.parametrize(
    ("request_", "answer", "problem"),
    [
        (SmokeRequest(path="/", expect=[200]), probe(200), None),
        (SmokeRequest(path="/admin/", expect=[301, 302]), probe(302), None),
        (SmokeRequest(path="/", expect=[200]), probe(503), "server error 503"),
        (SmokeRequest(path="/", expect=[200]), probe(404), "HTTP 404, expected 200"),
        (SmokeRequest(path="/", max_latency=1.0), probe(200, latency=1.5), "took 1500 ms"),
        (SmokeRequest(path="/", contains="<html"), probe(200, body="{}"), "does not contain"),
        (
            SmokeRequest(path="/me", expect=[401], json_key="detail"),
            probe(401, body='{"detail": "no"}'),
            None,
        ),
        (
            SmokeRequest(path="/me", expect=[401], json_key="detail"),
            probe(401, body="<html>"),
            "no 'detail' key",
        ),
    ],
)
def test_smoke_checks(request_: SmokeRequest, answer: Probe, problem: str | None) -> None:
    found = smoke_problem(answer, request_)
    assert found == problem if problem is None else problem in str(found)


def window(*probes: Probe) -> IntervalMetrics:
    metrics = IntervalMetrics()
    for p in probes:
        metrics.add(p)
    return metrics


def test_stability_trips_on_error_count_rate_and_latency() -> None:
    spec = StabilitySpec(max_errors=2, max_error_rate=0.5, max_latency=1.0)
    assert stability_verdict(window(*[probe(200)] * 20), spec) is None
    assert "3 errors" in str(stability_verdict(window(*[probe(200)] * 20, *[probe(500)] * 3), spec))
    assert "error rate" in str(
        stability_verdict(
            window(probe(200), probe(None), probe(502)),
            StabilitySpec(max_errors=5, max_error_rate=0.5),
        )
    )
    assert "p95 latency" in str(stability_verdict(window(*[probe(200, latency=1.5)] * 6), spec))
    # 4xx answers are the app working as designed, not instability.
    assert stability_verdict(window(*[probe(404)] * 10), spec) is None


def test_interval_figures() -> None:
    figures = window(
        probe(200, 0.010), probe(200, 0.020, version="v2"), probe(500, 0.030)
    ).figures()
    assert figures.requests == 3 and figures.errors == 1
    assert figures.error_rate == pytest.approx(0.3333, abs=1e-3)
    assert figures.p50_ms == 20.0 and figures.p99_ms == 30.0
    assert figures.versions == {"v1": 2, "v2": 1}


def test_percentile_nearest_rank() -> None:
    assert percentile([], 95) == 0.0
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile(list(range(1, 101)), 95) == 95


def test_an_answer_from_another_version_is_the_wrong_colour_not_a_bad_release() -> None:
    # Ports swapped in the spec: the probe aimed at green (v1.0.1) reaches blue (v1.0.0).
    answer = probe(200, version="v1.0.0")
    with pytest.raises(
        WrongColour, match=r"answered as v1.0.0, not v1.0.1: another container"
    ) as err:
        check_version(answer, "v1.0.1")
    assert err.value.blames_release is False
    check_version(answer, "v1.0.0")  # its own version: fine
    check_version(probe(200, version=None), "v1.0.1")  # no header: health decides, not this
    check_version(answer, None)  # nothing expected (the proxy's public answer)
