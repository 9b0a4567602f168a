"""The ops chat following real deployments: the bot (polling and its progress consumer)
on the Bot API emulator, a real `greenlight worker`, the test bed's Redis and hosts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from bot.app import build_bot, build_dispatcher
from bot.emulator import running_emulator
from bot.progress import Progress
from bot.settings import BotSettings
from deploy.spec import load_specs
from jobs.records import DeploymentRecord, RecordStore
from tests.bot.chat import Message, People, until
from tests.bot.conftest import Users
from tests.e2e.conftest import FAST, UNAPPROVED, Bed
from tests.e2e.test_workers import REDIS_URL, fresh_redis, running_workers

__all__ = ["fresh_redis"]  # the fixture, used by name
OPS = {"id": -100500, "type": "supergroup", "title": "ops"}
DANA = {"id": 1001, "first_name": "Dana", "username": "dana"}
DEADLINE = 180.0


async def within(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while not (found := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
    return found


@pytest.fixture
async def chat(bed: Bed, fresh_redis: redis.Redis) -> AsyncIterator[tuple[People, Users, Path]]:
    spec = bed.spec(**FAST, **UNAPPROVED)  # approval has its own tests
    async with running_emulator() as emulator, aiohttp.ClientSession() as session:
        users = Users(emulator, session)
        await users.call("chat", **OPS)
        settings = BotSettings(
            GREENLIGHT_BOT_TOKEN=emulator.token,
            GREENLIGHT_TELEGRAM_API=emulator.url,
            GREENLIGHT_OPS_CHAT=OPS["id"],
            GREENLIGHT_PEOPLE={"1001": ["deployer"]},
            REDIS_URL=REDIS_URL,
        )
        client = build_bot(settings)
        progress = Progress(client, fresh_redis, OPS["id"])
        dispatcher = build_dispatcher(settings, fresh_redis, load_specs(spec), progress)
        polling = asyncio.create_task(
            dispatcher.start_polling(client, handle_signals=False, polling_timeout=1)
        )
        try:
            with running_workers(spec):
                yield People(users), users, spec
        finally:
            await dispatcher.stop_polling()
            await polling
            await client.session.close()


async def followed_to(people: People, deployment: str, ending: str) -> Message:
    async def check() -> Message | None:
        for message in await people.bot_messages(OPS["id"]):
            if deployment in message["text"] and ending in message["text"]:
                return message
        return None

    return await within(check, f"{deployment} to read {ending!r}")  # type: ignore[no-any-return]


async def test_a_deployment_on_a_worker_is_followed_in_one_message_and_rolled_back(
    bed: Bed, chat: tuple[People, Users, Path], fresh_redis: redis.Redis
) -> None:
    people, users, spec = chat
    for version in ("v1.0.0", "v1.0.1"):
        await people.say_only(DANA, f"/deploy {version}", OPS)

        async def replied(version: str = version) -> bool:
            # The reply and the progress message may arrive in either order.
            sent = await people.bot_messages(OPS["id"])
            return any(
                m["text"].startswith(f"✅ deploy queued as production-{version}-") for m in sent
            )

        await until(replied, f"the reply to /deploy {version}")
        deployment = RecordStore(fresh_redis).recent("sample", "production")[0].id
        done = await followed_to(people, deployment, "✅ is live")

    lines = done["text"].splitlines()
    assert lines[:3] == [
        "🚀 deploy of v1.0.1 to sample/production",
        f"requested by @dana · {deployment}",
        "hosts: h1",
    ]
    phases = ["prepare", "preflight", "backup", "stage", "verify", "test", "smoke", "switch"]
    phases += ["monitor", "finalize"]
    assert [line.split()[:2] for line in lines[3:13]] == [["✅", name] for name in phases]
    assert lines[13].startswith("📈 stability, interval ") and "errors" in lines[13]
    assert [b["text"] for row in done["buttons"] for b in row] == ["↩️ Roll back"]
    assert bed.live(spec) == {"h1": "v1.0.1"}

    await users.call(
        "press",
        user=DANA,
        chat_id=OPS["id"],
        message_id=done["message_id"],
        data=done["buttons"][0][0]["callback_data"],
    )

    async def rollback_request() -> DeploymentRecord | None:
        found = RecordStore(fresh_redis).recent("sample", "production")
        return next((r for r in found if r.kind == "rollback"), None)

    rollback = await within(rollback_request, "the rollback request")
    back = await followed_to(people, rollback.id, "✅ is live")
    assert back["text"].startswith("🚀 rollback of v1.0.0 to sample/production")
    assert back["buttons"] == []
    assert bed.live(spec) == {"h1": "v1.0.0"}
    # Two replies, three progress messages, each edited in place; never a 429.
    messages = await people.bot_messages(OPS["id"])
    assert len(messages) == 5
    counted: Any = await users.call("counters")
    assert counted["too_many_requests"] == 0
