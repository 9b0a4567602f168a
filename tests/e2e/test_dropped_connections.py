"""A host's sshd drops its connections mid-deployment: a read or a pull is repeated
once the host is back, anything that changes state fails safe at the first drop, and
a host that stays away fails its phase with the number of attempts it was given.

`testbed.hosts.host_down` stops the host's sshd and kills its SSH sessions (nginx and
the containers keep serving); `host_up` starts sshd again.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import testbed
from deploy.commands import DATA_LIMIT, sh
from deploy.commands import state as state_commands
from deploy.commands.layout import Layout, layout_for
from deploy.errors import ConnectionDropped, HostUnreachable
from deploy.executor import ATTEMPTS, SSHExecutor
from deploy.spec import load_spec
from testbed.load import LoadResult
from testbed.paths import Host
from tests.e2e.conftest import FAST, Background, Bed, Run, assert_served

# How long sshd stays away once the engine noticed: the next retry (0.5 s later) finds it
# still down, and it is back well inside the 7.5 s the executor waits in all.
OUTAGE = 2.0

# Answers "first attempt" and then hangs, the first time; "second attempt" at once after.
SLOW_ANSWER = r"""
if [ -e "$1" ]; then echo 'second attempt'; exit 0; fi
touch "$1"; echo 'first attempt'; exec sleep 20
"""


@dataclass
class Seen:
    lines: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    first_line: asyncio.Event = field(default_factory=asyncio.Event)
    first_notice: asyncio.Event = field(default_factory=asyncio.Event)

    async def line(self, text: str) -> None:
        self.lines.append(text)
        self.first_line.set()

    async def notice(self, text: str) -> None:
        self.notices.append(text)
        self.first_notice.set()


@pytest.fixture
def marker(bed: Bed) -> Iterator[str]:
    """A file name in h1's home that a probe command creates; its leftovers are removed."""
    name = f"greenlight-drop-{uuid.uuid4().hex[:12]}"
    yield name
    subprocess.run(["pkill", "-9", "-u", Host.named("h1").user, "-f", name], check=False)
    (Host.named("h1").home / name).unlink(missing_ok=True)


def h1_executor(bed: Bed) -> tuple[SSHExecutor, Layout]:
    """The engine's executor for h1, and where the app lives there."""
    spec = load_spec(bed.spec(("h1",), **FAST))
    env = spec.environment(None)
    return SSHExecutor(env.hosts[0], env.ssh), layout_for(spec, env)


def test_a_read_cut_off_mid_answer_is_read_again_once_the_host_is_back(
    bed: Bed, marker: str
) -> None:
    read = sh(
        SLOW_ANSWER,
        marker,
        step="read a slow answer",
        timeout=20,
        data_limit=DATA_LIMIT,
        idempotent=True,
    )

    async def scenario() -> tuple[str, Seen]:
        executor, _ = h1_executor(bed)
        seen = Seen()
        running = asyncio.create_task(executor.run(read, on_line=seen.line, on_retry=seen.notice))
        await asyncio.wait_for(seen.first_line.wait(), 30)
        await asyncio.to_thread(testbed.hosts.host_down, "h1")
        await asyncio.wait_for(seen.first_notice.wait(), 10)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(testbed.hosts.host_up, "h1")
        result = await asyncio.wait_for(running, 30)
        await executor.close()
        return result.output, seen

    output, seen = asyncio.run(scenario())
    # The answer is the second attempt's alone: the first one's line is not in it twice.
    assert output == "second attempt\n"
    assert seen.lines == ["first attempt", "second attempt"]
    assert seen.notices[0].startswith("connection lost during read a slow answer: ")
    assert seen.notices[0].endswith("read a slow answer is safe to repeat: attempt 2 of 5 in 0.5 s")
    assert any(n.startswith("cannot connect to gl-h1@127.0.0.2:2222") for n in seen.notices[1:])
    assert len(seen.notices) < ATTEMPTS


def test_a_host_that_stays_down_fails_a_read_after_every_attempt_and_a_change_at_once(
    bed: Bed,
) -> None:
    executor, layout = h1_executor(bed)
    change = sh("echo changed > changed.txt", step="change something")

    never, _ = h1_executor(bed)  # a host this deployment never reached

    async def scenario() -> tuple[HostUnreachable, Seen, HostUnreachable, Seen, Seen]:
        await executor.run(state_commands.read(layout))  # connected, then the host goes
        await asyncio.to_thread(testbed.hosts.host_down, "h1")
        read_seen, change_seen, never_seen = Seen(), Seen(), Seen()
        with pytest.raises(HostUnreachable) as read_failed:
            await executor.run(state_commands.read(layout), on_retry=read_seen.notice)
        with pytest.raises(HostUnreachable) as change_failed:
            await executor.run(change, on_retry=change_seen.notice)
        with pytest.raises(ConnectionDropped):  # reported at once: status, preflight
            await never.run(state_commands.read(layout), on_retry=never_seen.notice)
        await executor.close()
        return read_failed.value, read_seen, change_failed.value, change_seen, never_seen

    read_error, read_seen, change_error, change_seen, never_seen = asyncio.run(scenario())
    assert never_seen.notices == []
    assert read_error.reason.startswith("cannot connect to gl-h1@127.0.0.2:2222: ")
    assert "(gave up after 5 attempts in " in read_error.reason
    assert [n.rsplit(": ", 1)[-1] for n in read_seen.notices] == [
        f"attempt {n} of 5 in {delay} s" for n, delay in ((2, 0.5), (3, 1), (4, 2), (5, 4))
    ]
    assert isinstance(change_error, ConnectionDropped) and not change_seen.notices
    assert change_error.reason.startswith("cannot connect to gl-h1@127.0.0.2:2222: ")
    assert "attempts" not in change_error.reason


def deploy_losing_a_host(
    bed: Bed, hosts: tuple[str, ...], lost: str, outage: Callable[[Background], None]
) -> tuple[Path, Run, list[LoadResult]]:
    """v1.0.0 live on `hosts`, then v1.0.1 one host at a time under load, with `lost`'s
    sshd stopped as the stage phase begins: `lost` stages after the first host, so its
    stage starts with a pull against a host that is gone. `outage` says what happens
    next; the spec, the run and what the load saw come back."""
    spec = bed.spec(hosts=hosts, **FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    serial = bed.spec(hosts=hosts, name="serial", parallel=1, **FAST)
    with ExitStack() as stack:
        loads = bed.loads(stack, hosts)
        deploy = bed.start("deploy", "v1.0.1", config=serial)
        deploy.wait_for(r"▶ stage$")
        testbed.hosts.host_down(lost)
        outage(deploy)
        run = deploy.finish()
        results = [load.stop() for load in loads]
    return spec, run, results


def test_a_host_whose_sshd_drops_for_two_seconds_mid_stage_is_waited_for(bed: Bed) -> None:
    def back_soon(deploy: Background) -> None:
        deploy.wait_for(r"stage +h2 +! cannot connect to gl-h2@.*pull .* attempt 2 of 5 in 0.5 s")
        time.sleep(OUTAGE)  # the pull keeps trying meanwhile
        testbed.hosts.host_up("h2")

    spec, run, results = deploy_losing_a_host(bed, ("h1", "h2"), "h2", back_soon)
    assert run.code == 0, run.output
    assert run.has(r"deploy of v1.0.1 to production: v1.0.1 is live")
    assert run.has(r"stage +h2 +! cannot connect .* attempt 3 of 5 in 1 s")
    assert not run.has(r"gave up after")
    for result in results:
        assert_served(result)
    assert bed.live(spec) == {"h1": "v1.0.1", "h2": "v1.0.1"}
    assert all(h["lock"] is None for h in bed.status(spec)["hosts"])


def test_a_host_whose_sshd_stays_down_mid_stage_fails_safe(bed: Bed) -> None:
    hosts = ("h1", "h2", "h3")
    spec, run, results = deploy_losing_a_host(bed, hosts, "h2", lambda deploy: None)
    assert run.code == 1, run.output
    assert run.has(
        r"stage failed on h2: cannot connect to gl-h2@127.0.0.3:2222: .*"
        r"\(gave up after 5 attempts in [\d.]+ s\)"
    ), run.output
    assert run.has(r"production untouched") and not run.has(r"▶ switch")
    assert run.has(r"note: h2: lock not released .*greenlight break-lock")
    for result in results:
        assert_served(result)
        assert result.versions["v1.0.1"] == 0
    testbed.hosts.host_up("h2")
    status = {h["name"]: h for h in bed.status(spec)["hosts"]}
    assert {name: h["live"]["version"] for name, h in status.items()} == dict.fromkeys(
        hosts, "v1.0.0"
    )
    # The hosts that stayed reachable were tidied and unlocked; the lost one keeps its
    # lock for an operator to look at, and the release is not blamed.
    assert status["h1"]["lock"] is None and status["h3"]["lock"] is None
    assert status["h2"]["lock"] and "production-v1.0.1" in status["h2"]["lock"]
    assert all(h["bad_versions"] == [] for h in status.values())
    for name in ("h1", "h3"):
        assert status[name]["colors"]["green"]["status"] == "removed"
