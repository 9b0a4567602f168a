"""Events are typed per kind: what the jobs layer streams and the bot renders."""

import pytest
from pydantic import ValidationError

from deploy.deployment import FailureReport
from deploy.events import EVENTS, DeployFinished, Kind, Metrics, event
from deploy.probes import Figures


def test_every_kind_round_trips_through_json_as_its_own_type() -> None:
    figures = Figures(
        requests=10, errors=1, error_rate=0.1, p50_ms=3, p95_ms=9, p99_ms=9, versions={"v1": 10}
    )
    sent = [
        event(Kind.deploy_started, deployment="d", env="prod", version="v1", who="a", hosts=["h"]),
        event(Kind.metrics, deployment="d", interval=3, figures=figures),
        event(
            Kind.deploy_finished,
            deployment="d",
            outcome="rolled_back",
            exit_code=1,
            failure=FailureReport(phase="monitor", message="unstable"),
        ),
        event(Kind.step, deployment="d", facts={"disk_mb": 800, "sha256": "ab"}),
    ]
    received = [EVENTS.validate_json(EVENTS.dump_json(e)) for e in sent]
    assert received == sent
    assert isinstance(received[1], Metrics) and received[1].figures.errors == 1
    assert isinstance(received[2], DeployFinished) and received[2].failure is not None


def test_a_field_the_kind_does_not_have_is_an_error_not_a_silent_extra() -> None:
    with pytest.raises(ValidationError, match="seconds"):
        event(Kind.phase_started, deployment="d", seconds=3)
    with pytest.raises(ValidationError, match="exit_code"):
        event(Kind.deploy_finished, deployment="d", outcome="live")
