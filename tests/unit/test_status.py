"""What `greenlight status` says: a typed report and its rendering, as a person reads it."""

from datetime import UTC, datetime

from deploy.state import HistoryEntry
from deploy.status import ColorView, EnvironmentStatus, HostStatus, LiveView, render_status

DIGEST = "sha256:" + "a" * 64
AT = datetime(2026, 11, 26, 14, 30, tzinfo=UTC)


def report() -> EnvironmentStatus:
    return EnvironmentStatus(
        app="shop",
        env="production",
        hosts=[
            HostStatus(
                name="web1",
                reachable=True,
                epoch=12,
                live=LiveView(color="green", version="v1.0.1", digest=DIGEST),
                colors={
                    "green": ColorView(version="v1.0.1", status="running", digest=DIGEST),
                    "blue": ColorView(
                        version="v1.0.0", status="running", digest=DIGEST, warm_until=AT
                    ),
                },
                lock="held by alice for production-v1.1.0-x since ...; ORPHANED: ...",
                switch="unfinished switch to v1.1.0 (blue) by production-v1.1.0-x",
            ),
            HostStatus(name="web2", reachable=False, error="cannot connect: timed out"),
        ],
        history=[
            HistoryEntry(
                deployment="production-v1.0.1-20261126_143000",
                version="v1.0.1",
                who="alice",
                result="live",
                started_at=AT,
                finished_at=AT,
                skipped_tests=True,
            )
        ],
    )


def test_status_reads_like_the_state_of_production() -> None:
    lines = render_status(report())
    assert lines[0] == "shop / production"
    assert lines[1] == "  web1: v1.0.1 on green (sha256:aaaaaaaaaaaa), epoch 12"
    assert "      blue: v1.0.0 running (kept warm until 14:30 UTC)" in lines
    assert "      green: v1.0.1 running" in lines
    assert any(line.startswith("      LOCKED: held by alice") for line in lines)
    assert "      SWITCH: unfinished switch to v1.1.0 (blue) by production-v1.1.0-x" in lines
    assert "  web2: UNREACHABLE (cannot connect: timed out)" in lines
    assert lines[-1].endswith("live         by alice (tests skipped)")
    assert not report().all_reachable


def test_the_json_form_round_trips() -> None:
    text = report().model_dump_json()
    assert EnvironmentStatus.model_validate_json(text) == report()
