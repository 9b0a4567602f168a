"""The host-side state scripts, run for real through sh on a scratch directory."""

import json
from pathlib import Path

import pytest

from deploy.commands import proxy
from deploy.commands import state as cmds
from deploy.commands.layout import Layout
from deploy.context import Refused
from deploy.executor import CommandFailed, LocalExecutor
from deploy.pipeline import choose_rollback
from deploy.state import ColorRecord, HostState, VerdictRecord, parse_host_state


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "upstream.conf").write_text("server 127.0.0.1:9 down;\n")
    return Layout(
        "shop",
        str(tmp_path / "app"),
        "compose.yml",
        str(tmp_path / "nginx/upstream.conf"),
        "backups",
    )


run = LocalExecutor().run


def owner(deployment: str, who: str = "alice") -> str:
    return json.dumps(
        {"deployment": deployment, "owner": who, "started_at": "2026-01-01T00:00:00+00:00"}
    )


async def acquire(layout: Layout, token: str, who: str = "alice", deployment: str = ""):
    cmd = cmds.acquire_lock(layout, token, owner(deployment or token, who))
    result = await run(cmd, check=False)
    return result.exit_status, parse_host_state("h", result.tail)


async def test_lock_is_exclusive_reentrant_and_bumps_the_epoch(layout: Layout) -> None:
    status, state = await acquire(layout, "d1")
    assert (status, state.epoch) == (0, 1)
    status, state = await acquire(layout, "d2", who="bob")
    assert status == cmds.LOCK_HELD_EXIT
    assert state.lock is not None and state.lock.owner == "alice"
    assert "held by alice for d1" in state.lock.describe()
    status, state = await acquire(layout, "d1")  # a retried job holds it already
    assert (status, state.epoch) == (0, 1)


async def test_same_id_in_the_same_second_is_still_a_different_deployment(
    layout: Layout,
) -> None:
    same_id = "production-v1.0.1-20260101_000000"
    assert (await acquire(layout, "token-a", deployment=same_id))[0] == 0
    status, state = await acquire(layout, "token-b", who="bob", deployment=same_id)
    assert status == cmds.LOCK_HELD_EXIT
    assert state.lock is not None and state.lock.owner == "alice"


def test_an_old_lock_is_reported_as_probably_stale() -> None:
    from datetime import timedelta

    from deploy.state import LockInfo, now

    fresh = LockInfo(deployment="d", owner="alice", started_at=now())
    old = LockInfo(deployment="d", owner="alice", started_at=now() - timedelta(hours=3))
    assert "stale" not in fresh.describe()
    assert "(180 min ago); it looks stale" in old.describe()


async def test_release_only_by_the_holder(layout: Layout) -> None:
    await acquire(layout, "d1")
    assert (await run(cmds.release_lock(layout, "d2"))).text == "not held by this deployment"
    assert (await acquire(layout, "d2"))[0] == cmds.LOCK_HELD_EXIT
    await run(cmds.release_lock(layout, "d1"))
    status, state = await acquire(layout, "d2")
    assert (status, state.epoch) == (0, 2)


async def test_breaking_a_lock_reports_its_owner(layout: Layout) -> None:
    await acquire(layout, "d1")
    assert '"owner": "alice"' in (await run(cmds.break_lock(layout))).text
    assert (await acquire(layout, "d2"))[0] == 0


async def test_a_stale_epoch_cannot_switch(layout: Layout) -> None:
    await acquire(layout, "d1")
    await run(cmds.release_lock(layout, "d1"))
    await acquire(layout, "d2")  # epoch is now 2
    stale = proxy.write_upstream(
        layout,
        "# greenlight color=green version=v9.9.9 deployment=d1 epoch=1\nserver x:1;\n",
        epoch=1,
    )
    with pytest.raises(CommandFailed) as err:
        await run(stale)
    assert err.value.result.exit_status == proxy.FENCED_EXIT
    assert "host is at epoch 2" in err.value.result.text
    assert Path(layout.upstream_file).read_text() == "server 127.0.0.1:9 down;\n"


async def test_switch_writes_the_upstream_and_read_sees_the_live_colour(layout: Layout) -> None:
    await acquire(layout, "d1")
    text = proxy.upstream_text(
        "server {address}:{port};",
        color="blue",
        address="127.0.0.1",
        port=8001,
        version="v1.0.0",
        deployment="d1",
        epoch=1,
    )
    await run(proxy.write_upstream(layout, text, epoch=1))
    record = ColorRecord(
        color="blue",
        version="v1.0.0",
        digest="sha256:" + "b" * 64,
        image="img@sha256:" + "b" * 64,
        port=8001,
        deployment="d1",
        status="running",
    )
    await run(cmds.write_color(layout, "blue", record.model_dump_json()))
    state = parse_host_state("h", (await run(cmds.read(layout))).tail)
    assert state.live is not None and state.live.color == "blue"
    assert state.live_record == record
    assert state.idle_color() == "green"
    assert not list(Path(layout.upstream_file).parent.glob("*tmp*"))


async def test_history_is_appended_once_per_deployment(layout: Layout) -> None:
    line = json.dumps(
        {
            "deployment": "d1",
            "version": "v1.0.0",
            "who": "alice",
            "result": "live",
            "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:01:00Z",
        },
        separators=(",", ":"),
    )
    for _ in range(3):
        await run(cmds.append_history(layout, "d1", line))
    state = parse_host_state("h", (await run(cmds.read(layout))).tail)
    assert [e.deployment for e in state.history] == ["d1"]


async def test_verdicts_are_read_back_and_corruption_is_reported(layout: Layout) -> None:
    bad = VerdictRecord(version="v1.0.2", verdict="bad", reason="verify: unhealthy")
    await run(cmds.write_verdict(layout, "v1.0.2", bad.model_dump_json()))
    Path(layout.state_dir, "epoch").write_text("banana\n")
    state = parse_host_state("h", (await run(cmds.read(layout))).tail)
    assert state.is_bad("v1.0.2") and not state.is_bad("v1.0.1")
    assert state.problems == ["epoch file is corrupt: 'banana'"]


def host_state(live: str | None, idle: tuple[str, str] | None, bad: str = "") -> HostState:
    state = HostState(host="h1")
    colors = {}
    if live:
        colors["blue"] = ColorRecord(
            color="blue",
            version=live,
            digest="sha256:1",
            image="i@1",
            port=8001,
            deployment="d",
            status="running",
        )
        state.live = proxy.parse_live(
            f"# greenlight color=blue version={live} deployment=d epoch=1\n"
        )
    if idle:
        colors["green"] = ColorRecord(
            color="green",
            version=idle[0],
            digest="sha256:2",
            image="i@2",
            port=8002,
            deployment="d",
            status=idle[1],
        )
    state.colors = colors  # type: ignore[assignment]
    if bad:
        state.verdicts[bad] = VerdictRecord(version=bad, verdict="bad", reason="smoke: 500")
    return state


def test_rollback_goes_to_the_previous_colour() -> None:
    assert choose_rollback([host_state("v1.0.1", ("v1.0.0", "stopped"))], None)[0] == "v1.0.0"


@pytest.mark.parametrize(
    ("state", "to", "why"),
    [
        (host_state(None, None), None, "nothing is live"),
        (host_state("v1.0.0", None), None, "no previous version is kept"),
        (host_state("v1.0.1", ("v1.0.2", "removed")), None, "no previous version is kept"),
        (host_state("v1.0.1", ("v1.0.0", "stopped"), bad="v1.0.0"), None, "recorded as bad"),
        (host_state("v1.0.1", ("v1.0.0", "stopped")), "v0.9.0", "runs v1.0.0, not v0.9.0"),
    ],
)
def test_rollback_with_nothing_good_is_refused(state: HostState, to: str | None, why: str) -> None:
    with pytest.raises(Refused, match=why):
        choose_rollback([state], to)


def test_hosts_that_disagree_are_refused() -> None:
    with pytest.raises(Refused, match="hosts disagree"):
        choose_rollback(
            [
                host_state("v1.0.1", ("v1.0.0", "stopped")),
                host_state("v1.0.1", ("v0.9.0", "stopped")),
            ],
            None,
        )


async def test_backups_past_retention_are_pruned(tmp_path: Path) -> None:
    from deploy.commands import backup

    root = tmp_path / "backups"
    for name, age_days in [
        ("pre-deploy-v1.0.0-old", 31),
        ("pre-deploy-v1.0.1-new", 29),
        ("unrelated-dir", 90),
    ]:
        (root / name).mkdir(parents=True)
        await run(command_touch(root / name, age_days))
    result = await run(backup.prune(str(tmp_path), "backups", retention_days=30))
    assert result.tail == ["backups/pre-deploy-v1.0.0-old"]
    assert sorted(p.name for p in root.iterdir()) == ["pre-deploy-v1.0.1-new", "unrelated-dir"]


def command_touch(path: Path, age_days: int):
    from deploy.commands import command

    return command("touch", "-d", f"{age_days} days ago", str(path), step="age")
