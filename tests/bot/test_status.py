"""/status answers at once with what Redis knows, then edits in each host's own word:
a host that never answers and a host that refuses the connection each get their
reason, within the status timeout, and the reply never waits for them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import redis

from bot.emulator import Emulator
from deploy.spec import Spec, parse_spec
from jobs.lease import Lease
from jobs.records import RecordStore
from jobs.work import lease_holder
from tests.bot.chat import People, until
from tests.bot.conftest import Users
from tests.bot.running import ADA, DANA, EVE, OPS, running_bot, settings_for


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never says a word (a hung host)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spec_with(tmp_path: Path, hosts: list[dict[str, Any]]) -> dict[str, Spec]:
    key = tmp_path / "id_ed25519"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key))
    (tmp_path / "known_hosts").write_text("")
    ssh = {"key": str(key), "known_hosts": str(tmp_path / "known_hosts"), "connect_timeout": 60}
    env = {"public_url": "http://127.0.0.1:9", "ssh": ssh}
    spec = parse_spec(
        {
            "app": "shop",
            "image": "registry.example.com/acme/shop",
            "default_environment": "production",
            "environments": {
                "production": {**env, "hosts": hosts},
                "staging": {
                    **env,
                    "hosts": hosts,
                    "approval": "none",
                    "project": "shop-staging",
                    "app_dir": "staging",
                    "ports": {"blue": 8101, "green": 8102},
                    "proxy": {"upstream_file": "nginx/staging.conf"},
                },
            },
        }
    )
    return {"shop": spec}


async def test_status_answers_at_once_then_names_each_hosts_problem(
    emulator: Emulator, users: Users, r: redis.Redis, tmp_path: Path, silent_port: int
) -> None:
    refusing = closed_port()
    hosts = [
        {"name": "h1", "address": "127.0.0.1", "port": silent_port},
        {"name": "h2", "address": "127.0.0.1", "port": refusing},
    ]
    specs = spec_with(tmp_path, hosts)
    settings = settings_for(emulator, GREENLIGHT_STATUS_TIMEOUT=1)
    async with running_bot(settings, users, r, specs):
        people = People(users)
        await people.say(DANA, "/deploy v1.0.1 staging", OPS)
        earlier = RecordStore(r).recent("shop", "staging")[0].id
        RecordStore(r).advance(earlier, "running", phase="prepare")
        record = RecordStore(r).advance(earlier, "live")
        Lease(r, "shop", "staging").release(lease_holder(record))  # as the worker's finalize
        await people.say(ADA, "/lock staging <db> migration", OPS)
        await people.say(DANA, "/deploy v1.0.2 staging", OPS)  # refused: locked
        await people.say(ADA, "/unlock staging", OPS)
        await people.say(DANA, "/deploy v1.0.2 staging", OPS)
        current = RecordStore(r).recent("shop", "staging")[0].id

        reply = await people.say(DANA, "/status staging", OPS)
        assert reply["text"].splitlines() == [  # h1 answers nothing for a second
            "📊 shop/staging",
            f"Now: deploy of v1.0.2 is queued ({current}, by @dana)",
            f"Last release recorded live: v1.0.1 ({earlier})",
            "⏳ checking hosts…",
        ]
        assert reply["edits"] == 0  # the reply did not wait for the hosts

        async def checked() -> dict[str, Any] | None:
            now = await people.card(OPS["id"], reply)
            return now if now["edits"] else None

        final = await until(checked, "the hosts' state")
        lines = final["text"].splitlines()
        assert lines[:3] == reply["text"].splitlines()[:3]
        assert lines[3] == "🔴 h1: unreachable: no answer within 1 s"
        assert lines[4] == (
            f"🔴 h2: unreachable: cannot connect to deploy@127.0.0.1:{refusing}: "
            f"[Errno 111] Connect call failed ('127.0.0.1', {refusing})"
        )
        assert len(lines) == 5


async def test_status_of_an_idle_locked_environment_and_bad_arguments(
    emulator: Emulator, users: Users, r: redis.Redis, tmp_path: Path
) -> None:
    specs = spec_with(tmp_path, [{"name": "h1", "address": "127.0.0.1", "port": closed_port()}])
    async with running_bot(settings_for(emulator), users, r, specs):
        people = People(users)
        await people.say(ADA, "/lock freeze until <Monday> & after", OPS)
        reply = await people.say(DANA, "/status", OPS)
        first = (reply["history"] or [reply["text"]])[0]  # the hosts may have answered already
        assert first.splitlines() == [
            "📊 shop/production",
            "Now: nothing in progress",
            "🔒 locked by tg:1003: freeze until <Monday> & after",
            "Last release recorded live: none",
            "⏳ checking hosts…",
        ]

        async def checked() -> dict[str, Any] | None:
            now = await people.card(OPS["id"], reply)
            return now if now["edits"] else None

        assert "🔴 h1: unreachable" in (await until(checked, "the hosts"))["text"]
        bad = await people.say(DANA, "/status prod", OPS)
        assert bad["text"].startswith("⚠️ unexpected 'prod'\nUsage: /status [APP] [ENV]")
        stranger = await people.say(EVE, "/status", OPS)
        assert stranger["text"].startswith("⛔ You are not on Greenlight's list.")
