"""Where a rollback goes: the last good release before the live one, whatever failed in
between; never a version recorded as bad."""

from datetime import UTC, datetime, timedelta

import pytest

from deploy.errors import Refused
from deploy.pipeline import RollbackPlan, choose_rollback
from deploy.state import ColorRecord, HistoryEntry, HostState, parse_live

IMAGE = "registry/shop"


def digest(version: str) -> str:
    return "sha256:" + version.replace(".", "").replace("v", "").ljust(64, "0")


def record(color: str, version: str, status: str) -> ColorRecord:
    return ColorRecord(
        color=color,  # type: ignore[arg-type]
        version=version,
        digest=digest(version),
        image=f"{IMAGE}@{digest(version)}",
        port=8001 if color == "blue" else 8002,
        deployment=f"d-{version}",
        status=status,  # type: ignore[arg-type]
    )


def host(
    live: str | None,
    idle: tuple[str, str] | None = None,
    released: tuple[str, ...] = (),
    bad: tuple[str, ...] = (),
    name: str = "h1",
) -> HostState:
    state = HostState(host=name, bad=set(bad))
    if live:
        state.colors["blue"] = record("blue", live, "running")
        state.live = parse_live(f"# greenlight color=blue version={live} deployment=d epoch=1\n")
    if idle:
        state.colors["green"] = record("green", *idle)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    state.releases = [
        HistoryEntry(
            deployment=f"production-{v}-{i}",
            version=v,
            digest=digest(v),
            who="alice",
            result="live",
            started_at=start + timedelta(hours=i),
            finished_at=start + timedelta(hours=i, minutes=1),
        )
        for i, v in enumerate(released)
    ]
    return state


def test_the_previous_colour_is_the_fast_path() -> None:
    state = host("v1.0.1", ("v1.0.0", "stopped"), released=("v1.0.0", "v1.0.1"))
    assert choose_rollback([state], None, IMAGE) == RollbackPlan(
        "v1.0.0", f"{IMAGE}@{digest('v1.0.0')}", digest("v1.0.0")
    )


@pytest.mark.parametrize("failed", [("v1.0.2",), ("v1.0.2", "v1.0.3")])
def test_after_failed_candidates_it_still_goes_to_the_last_good_release(
    failed: tuple[str, ...],
) -> None:
    # The failed candidates replaced the idle colour and are recorded as bad.
    state = host("v1.0.1", (failed[-1], "removed"), released=("v1.0.0", "v1.0.1"), bad=failed)
    plan = choose_rollback([state], None, IMAGE)
    assert (plan.version, plan.digest) == ("v1.0.0", digest("v1.0.0"))


def test_a_bad_previous_release_is_skipped_for_an_older_good_one() -> None:
    state = host(
        "v1.0.2", ("v1.0.1", "stopped"), released=("v1.0.0", "v1.0.1", "v1.0.2"), bad=("v1.0.1",)
    )
    assert choose_rollback([state], None, IMAGE).version == "v1.0.0"


def test_to_a_named_release_that_is_no_longer_kept() -> None:
    state = host("v1.0.2", ("v1.0.1", "stopped"), released=("v1.0.0", "v1.0.1", "v1.0.2"))
    assert choose_rollback([state], "v1.0.0", IMAGE).version == "v1.0.0"


@pytest.mark.parametrize(
    ("state", "to", "why"),
    [
        (host(None), None, "nothing is live"),
        (host("v1.0.0", released=("v1.0.0",)), None, "no good release before v1.0.0"),
        (
            host("v1.0.1", ("v1.0.0", "stopped"), ("v1.0.0", "v1.0.1"), bad=("v1.0.0",)),
            None,
            "no good release before v1.0.1",
        ),
        (host("v1.0.1", released=("v1.0.0", "v1.0.1")), "v0.9.0", "v0.9.0 was never live here"),
        (
            host("v1.0.1", released=("v1.0.0", "v1.0.1"), bad=("v1.0.0",)),
            "v1.0.0",
            "v1.0.0 is recorded as bad",
        ),
        (host("v1.0.1", released=("v1.0.0", "v1.0.1")), "v1.0.1", "is what is live now"),
    ],
)
def test_rollback_with_nothing_good_is_refused(state: HostState, to: str | None, why: str) -> None:
    with pytest.raises(Refused, match=why):
        choose_rollback([state], to, IMAGE)


def test_hosts_that_disagree_are_refused() -> None:
    with pytest.raises(Refused, match="hosts disagree"):
        choose_rollback(
            [
                host("v1.0.1", ("v1.0.0", "stopped"), ("v1.0.0", "v1.0.1")),
                host("v1.0.1", ("v0.9.0", "stopped"), ("v0.9.0", "v1.0.1"), name="h2"),
            ],
            None,
            IMAGE,
        )
