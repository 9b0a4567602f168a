"""/status in the ops chat against the test bed's real hosts: the reply comes at once,
then each host's live colour and version, read over SSH; a host whose sshd is down is
named with the reason, and the others still count."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import redis

import testbed
from bot.emulator import running_emulator
from deploy.spec import load_specs
from tests.bot.chat import People, until
from tests.bot.conftest import Users
from tests.bot.running import DANA, OPS, running_bot, settings_for
from tests.e2e.conftest import FAST, Bed


async def test_status_reads_the_hosts_and_names_the_one_that_is_down(
    bed: Bed, r: redis.Redis
) -> None:
    spec = bed.spec(hosts=("h1", "h2"), **FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    testbed.hosts.host_down("h2")
    try:
        async with (
            running_emulator() as emulator,
            aiohttp.ClientSession() as session,
        ):
            users = Users(emulator, session)
            settings = settings_for(emulator, GREENLIGHT_STATUS_TIMEOUT=5)
            async with running_bot(settings, users, r, load_specs(spec)):
                people = People(users)
                reply = await people.say(DANA, "/status", OPS)
                first = (reply["history"] or [reply["text"]])[0]
                assert first.splitlines()[-1] == "⏳ checking hosts…"

                async def checked() -> dict[str, Any] | None:
                    now = await people.card(OPS["id"], reply)
                    return now if now["edits"] else None

                final = await until(checked, "the hosts' state")
    finally:
        testbed.hosts.host_up("h2")
    lines = final["text"].splitlines()
    assert lines[:3] == [
        "📊 sample/production",
        "Now: nothing in progress",
        "Last release recorded live: none",  # deployed from a terminal, not the workers
    ]
    assert re.fullmatch(r"🟢 h1: v1\.0\.0 live on (blue|green), epoch \d+", lines[3]), lines
    assert lines[4].startswith("🔴 h2: unreachable: cannot connect to "), lines
    assert len(lines) == 5
