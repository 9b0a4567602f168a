"""The host-side state scripts, run for real through sh on a scratch directory."""

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deploy.commands import data, proxy
from deploy.commands import state as cmds
from deploy.commands.layout import Layout
from deploy.errors import CommandFailed, HostStateUnreadable, OutputTooLarge
from deploy.executor import LocalExecutor
from deploy.spec import ProxySpec
from deploy.state import (
    ColorRecord,
    HistoryEntry,
    HostState,
    LockInfo,
    SwitchRecord,
    VerdictRecord,
    now,
    parse_host_state,
)

DIGEST = "sha256:" + "b" * 64


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


def owner(deployment: str, who: str = "alice", pid: int | None = None) -> str:
    return json.dumps(
        {
            "deployment": deployment,
            "owner": who,
            "started_at": "2026-01-01T00:00:00+00:00",
            "machine": os.uname().nodename,
            "pid": pid or os.getpid(),
        }
    )


async def acquire(layout: Layout, token: str, who: str = "alice", deployment: str = ""):
    cmd = cmds.acquire_lock(layout, token, owner(deployment or token, who))
    result = await run(cmd, check=False)
    return result.exit_status, parse_host_state("h", result.output)


async def read(layout: Layout, history: int = 10) -> HostState:
    return parse_host_state("h", (await run(cmds.read(layout, history))).output)


def upstream(color: str, version: str, epoch: int = 1, deployment: str = "d1") -> str:
    return proxy.upstream_text(
        "server {address}:{port};",
        color=color,  # type: ignore[arg-type]
        address="127.0.0.1",
        port=8001 if color == "blue" else 8002,
        version=version,
        deployment=deployment,
        epoch=epoch,
    )


def color_record(color: str, version: str, status: str = "running") -> ColorRecord:
    return ColorRecord(
        color=color,  # type: ignore[arg-type]
        version=version,
        digest=DIGEST,
        image="img@" + DIGEST,
        port=8001 if color == "blue" else 8002,
        deployment="d1",
        status=status,  # type: ignore[arg-type]
    )


def point(layout: Layout, content: str, epoch: int, test: list[str] | None = None):
    spec = ProxySpec(test=test or ["true"], reload=["true"])
    mark = SwitchRecord(
        deployment="d1",
        epoch=epoch,
        to_color="blue",
        to_version="v1.0.0",
        before=Path(layout.upstream_file).read_text(),
    )
    return proxy.point(layout, spec, content, epoch, mark.model_dump_json())


async def test_lock_is_exclusive_reentrant_and_bumps_the_epoch(layout: Layout) -> None:
    status, state = await acquire(layout, "d1")
    assert (status, state.epoch) == (0, 1)
    status, state = await acquire(layout, "d2", who="bob")
    assert status == cmds.LOCK_HELD_EXIT
    assert state.lock is not None and state.lock.owner == "alice"
    assert "held by alice for d1" in state.lock.describe("production")
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


def test_a_lock_whose_process_is_gone_is_orphaned_with_the_command_that_breaks_it() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock = LockInfo(
        deployment="d", owner="alice", started_at=now(), machine=os.uname().nodename, pid=gone.pid
    )
    text = lock.describe("production")
    assert "ORPHANED: its process" in text and "(0 min ago)" in text
    assert "`greenlight break-lock --env production --yes`" in text
    alive = lock.model_copy(update={"pid": os.getpid()})
    assert "ORPHANED" not in alive.describe("production")
    elsewhere = lock.model_copy(update={"machine": "another-box"})
    assert "ORPHANED" not in elsewhere.describe("production")


def test_an_old_lock_is_reported_as_probably_stale() -> None:
    fresh = LockInfo(deployment="d", owner="alice", started_at=now(), machine="x", pid=1)
    old = fresh.model_copy(update={"started_at": now() - timedelta(hours=3)})
    assert "stale" not in fresh.describe("staging")
    assert "(180 min ago); it looks stale (process 1 on x)" in old.describe("staging")
    assert "`greenlight break-lock --env staging --yes`" in old.describe("staging")


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


async def test_a_corrupt_epoch_refuses_the_lock_and_the_read(layout: Layout) -> None:
    Path(layout.state_dir).mkdir(parents=True)
    Path(layout.state_dir, "epoch").write_text("banana\n")
    result = await run(cmds.acquire_lock(layout, "d1", owner("d1")), check=False)
    assert result.exit_status == 1 and "epoch file is corrupt: banana" in result.text
    assert not Path(layout.state_dir, "lock").exists()
    with pytest.raises(HostStateUnreadable, match="epoch file is corrupt: 'banana'"):
        await read(layout)


async def test_a_stale_epoch_cannot_switch(layout: Layout) -> None:
    await acquire(layout, "d1")
    await run(cmds.release_lock(layout, "d1"))
    await acquire(layout, "d2")  # epoch is now 2
    with pytest.raises(CommandFailed) as err:
        await run(point(layout, upstream("green", "v9.9.9"), epoch=1))
    assert err.value.result.exit_status == proxy.FENCED_EXIT
    assert "host is at epoch 2" in err.value.result.text
    assert Path(layout.upstream_file).read_text() == "server 127.0.0.1:9 down;\n"
    assert (await read(layout)).switch is None


async def test_a_switch_is_marked_until_cleared_and_read_sees_the_live_colour(
    layout: Layout,
) -> None:
    await acquire(layout, "d1")
    await run(point(layout, upstream("blue", "v1.0.0"), epoch=1))
    await run(cmds.write_color(layout, "blue", color_record("blue", "v1.0.0").model_dump_json()))
    state = await read(layout)
    assert state.live is not None and state.live.color == "blue"
    assert state.live_record == color_record("blue", "v1.0.0").model_copy(
        update={"updated_at": state.live_record.updated_at if state.live_record else None}
    )
    assert state.idle_color() == "green"
    # Until the caller confirms what the proxy serves, the host remembers what it served.
    assert state.switch is not None and state.switch.before == "server 127.0.0.1:9 down;\n"
    await run(proxy.clear_switch(layout, epoch=1))
    assert (await read(layout)).switch is None
    assert not list(Path(layout.upstream_file).parent.glob("*greenlight*"))


async def test_a_config_the_proxy_rejects_is_put_back_and_unmarked(layout: Layout) -> None:
    await acquire(layout, "d1")
    with pytest.raises(CommandFailed) as err:
        await run(point(layout, upstream("blue", "v1.0.0"), epoch=1, test=["false"]))
    assert err.value.result.exit_status == proxy.REJECTED_EXIT
    assert Path(layout.upstream_file).read_text() == "server 127.0.0.1:9 down;\n"
    assert (await read(layout)).switch is None


async def test_test_and_reload_words_reach_the_proxy_commands_unmangled(
    layout: Layout, tmp_path: Path
) -> None:
    await acquire(layout, "d1")
    out = tmp_path / "words"
    hostile = ["$(touch pwned)", "a b", "'\"", "*", "${1}"]
    spec = ProxySpec(
        test=["sh", "-c", 'printf "%s\\n" "$@" > "$0"', str(out), *hostile],
        reload=["true"],
    )
    mark = SwitchRecord(deployment="d1", epoch=1, to_color="blue", to_version="v1", before="")
    await run(proxy.point(layout, spec, upstream("blue", "v1"), 1, mark.model_dump_json()))
    assert out.read_text().splitlines() == hostile
    assert not Path("pwned").exists()


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
    state = await read(layout)
    assert [e.deployment for e in state.history] == ["d1"]


# -- years of use: hundreds of versions, thousands of history lines --------------------


def seed_volume(layout: Layout, verdicts: int = 500, history: int = 2000) -> None:
    """A host that has been deployed to for years, written the way the engine writes."""
    state = Path(layout.state_dir)
    (state / "verdicts").mkdir(parents=True, exist_ok=True)
    for i in range(verdicts):
        version = f"v1.{i // 100}.{i % 100}"
        bad = i % 3 == 0
        record = VerdictRecord(
            version=version,
            verdict="bad" if bad else "good",
            reason="verify: unhealthy " + "x" * 120 if bad else "",
        )
        (state / "verdicts" / version).write_text(record.model_dump_json() + "\n")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with (state / "history.jsonl").open("w") as out:
        for i in range(history):
            version = f"v1.{(i % verdicts) // 100}.{i % 100}"
            entry = HistoryEntry(
                deployment=f"production-{version}-{i:08d}",
                version=version,
                digest=DIGEST,
                who="alice",
                result="not_switched" if i % 3 == 0 else "live",
                started_at=start + timedelta(hours=i),
                finished_at=start + timedelta(hours=i, minutes=2),
                phases={p: 1.5 for p in ("prepare", "preflight", "stage", "verify", "switch")},
                failure="stage: health check failed " + "y" * 200 if i % 3 == 0 else None,
            )
            out.write(entry.model_dump_json() + "\n")
    (state / "epoch").write_text("1734\n")
    (state / "colors").mkdir(exist_ok=True)
    (state / "colors" / "green.json").write_text(
        color_record("green", "v1.4.98").model_dump_json() + "\n"
    )
    (state / "colors" / "blue.json").write_text(
        color_record("blue", "v1.4.97", "stopped").model_dump_json() + "\n"
    )
    Path(layout.upstream_file).write_text(upstream("green", "v1.4.98", epoch=1734))


async def test_a_host_with_years_of_history_is_read_whole_and_small(layout: Layout) -> None:
    seed_volume(layout)
    result = await run(cmds.read(layout))
    # What a decision needs only: bad versions by name, the last releases and lines.
    assert len(result.output.encode()) < 24_000, len(result.output)
    state = parse_host_state("h", result.output)
    assert state.epoch == 1734
    assert state.live is not None and (state.live.color, state.live.version) == (
        "green",
        "v1.4.98",
    )
    assert state.idle_color() == "blue"
    assert len(state.bad) == 167 and state.is_bad("v1.0.0") and not state.is_bad("v1.0.1")
    assert len(state.releases) == cmds.RELEASES and len(state.history) == 10
    assert all(e.result == "live" for e in state.releases)
    assert state.history[-1].deployment == "production-v1.4.99-00001999"
    assert state.problems == []


async def test_taking_the_lock_on_such_a_host_reads_it_whole_too(layout: Layout) -> None:
    seed_volume(layout)
    status, state = await acquire(layout, "d1")
    assert status == 0 and state.epoch == 1735
    assert state.live is not None and state.live.version == "v1.4.98"


async def test_an_answer_cut_at_any_section_boundary_is_refused(layout: Layout) -> None:
    seed_volume(layout, verdicts=30, history=60)
    text = (await run(cmds.read(layout))).output
    assert parse_host_state("h", text).live is not None
    lines = text.splitlines(keepends=True)
    boundaries = [i for i, line in enumerate(lines) if line.startswith("@@")]
    assert len(boundaries) == len(cmds.SECTIONS)
    for index in boundaries:
        with pytest.raises(HostStateUnreadable, match="host state unreadable"):
            parse_host_state("h", "".join(lines[:index]))
    # Nor is an answer that skips a section, or lists them out of order.
    without_upstream = text.replace("@@upstream\n", "")
    with pytest.raises(HostStateUnreadable, match="section upstream missing"):
        parse_host_state("h", without_upstream)


async def test_a_live_colour_without_its_record_is_unreadable_not_idle(layout: Layout) -> None:
    seed_volume(layout, verdicts=3, history=3)
    Path(layout.state_dir, "colors", "green.json").write_text("{not json\n")
    with pytest.raises(HostStateUnreadable, match="green record is corrupt"):
        await read(layout)
    Path(layout.state_dir, "colors", "green.json").unlink()
    with pytest.raises(HostStateUnreadable, match="no green record"):
        await read(layout)


async def test_a_data_answer_over_its_limit_fails_loudly() -> None:
    huge = data("head -c $(( $1 + 1 )) /dev/zero | tr '\\0' 'x'", "1048576", step="huge")
    with pytest.raises(OutputTooLarge, match="larger than 1048576 bytes"):
        await run(huge)
    fits = data("head -c 1000 /dev/zero | tr '\\0' 'x'; echo", step="fits")
    assert len((await run(fits)).output) == 1001


# -- keeping the previous release warm ----------------------------------------------


@pytest.mark.parametrize(
    ("situation", "stopped"),
    [("idle", True), ("live again", False), ("deploying", False), ("replaced", False)],
)
async def test_a_warm_colour_is_stopped_later_by_the_host_only_while_still_idle(
    layout: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, situation: str, stopped: bool
) -> None:
    from deploy.commands import compose
    from deploy.commands.layout import Slot
    from deploy.spec import HostSpec

    calls = tmp_path / "docker-calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    Path(layout.app_dir).mkdir(parents=True)
    Path(layout.state_dir, "colors").mkdir(parents=True)
    record = color_record("blue", "v1.0.0").model_copy(update={"deployment": "d0"})
    Path(layout.state_dir, "colors", "blue.json").write_text(record.model_dump_json() + "\n")
    Path(layout.upstream_file).write_text(upstream("green", "v1.0.1"))
    slot = Slot(layout, HostSpec(name="h", address="local"), "blue", 8001, "img", "v1.0.0", "d0")
    await run(compose.stop_later(slot, 1))
    if situation == "live again":
        Path(layout.upstream_file).write_text(upstream("blue", "v1.0.0"))
    elif situation == "deploying":
        Path(layout.state_dir, "lock").mkdir()
    elif situation == "replaced":
        newer = record.model_copy(update={"deployment": "d9"})
        Path(layout.state_dir, "colors", "blue.json").write_text(newer.model_dump_json())
    await asyncio.sleep(1.6)
    after = ColorRecord.model_validate_json(
        Path(layout.state_dir, "colors", "blue.json").read_text()
    )
    if stopped:
        assert calls.read_text().split() == ["compose", "--ansi", "never", "stop"]
        assert after.status == "stopped"
    else:
        assert not calls.exists()
        assert after.status == "running"
