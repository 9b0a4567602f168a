"""The real bot (aiogram, long polling) against the emulator, for a block: the settings
and specs a test needs, one update at a time so a later reply proves an earlier update
got none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import redis
from aiogram import Bot

from bot.app import build_bot, build_dispatcher, serve
from bot.emulator import Emulator
from bot.notify import Notifier
from bot.progress import Progress
from bot.settings import BotSettings
from deploy.spec import Spec
from tests.bot.chat import until, until_healthy
from tests.bot.conftest import Users

OPS = {"id": -100500, "type": "supergroup", "title": "ops"}
ELSEWHERE = {"id": -100777, "type": "supergroup", "title": "elsewhere"}
CHANNEL = {"id": -100900, "type": "channel", "title": "news"}
DANA = {"id": 1001, "first_name": "Dana", "username": "dana"}  # deployer
BOB = {"id": 1002, "first_name": "Bob", "username": "bob"}  # deployer, approver
ADA = {"id": 1003, "first_name": "Ada", "username": "ada"}  # admin
CARL = {"id": 1004, "first_name": "Carl", "username": "carl"}  # approver only
EVE = {"id": 666, "first_name": "Eve", "username": "eve"}  # not listed
PEOPLE = {"1001": ["deployer"], "1002": ["deployer", "approver"], "1003": ["admin"]}


def settings_for(emulator: Emulator, **more: Any) -> BotSettings:
    return BotSettings(
        GREENLIGHT_BOT_TOKEN=emulator.token,
        GREENLIGHT_TELEGRAM_API=emulator.url,
        GREENLIGHT_OPS_CHAT=OPS["id"],
        GREENLIGHT_PEOPLE={**PEOPLE, "1004": ["approver"]},
        **more,
    )


@asynccontextmanager
async def running_bot(
    settings: BotSettings, users: Users, r: redis.Redis, specs: dict[str, Spec]
) -> AsyncIterator[Bot]:
    for chat in (OPS, ELSEWHERE, CHANNEL):
        await users.call("chat", **chat)
    client = build_bot(settings)
    dispatcher = build_dispatcher(settings, r, specs)
    polling = asyncio.create_task(
        dispatcher.start_polling(
            client, handle_signals=False, handle_as_tasks=False, polling_timeout=1
        )
    )

    async def started() -> bool:
        return bool(await client.get_my_commands())

    try:
        await until(started, "the bot to register its commands")
        yield client
    finally:
        await dispatcher.stop_polling()
        await polling
        await client.session.close()


@asynccontextmanager
async def serving(
    settings: BotSettings, specs: dict[str, Spec], connection: redis.Redis
) -> AsyncIterator[str]:
    """`serve` as `greenlight bot` runs it (its HTTP server, the progress consumer with
    the notifications, GitHub's consumers as the settings ask) until the block ends;
    yields the HTTP server's base URL once /health answers 200."""
    bot = build_bot(settings)
    progress = Progress(bot, connection, settings.ops_chat, Notifier(bot, settings, specs=specs))
    stopping = asyncio.Event()
    task = asyncio.create_task(serve(settings, specs, bot, connection, stopping, progress))
    base = f"http://{settings.http_host}:{settings.http_port}"
    try:
        async with aiohttp.ClientSession() as session:
            await until_healthy(session, base, task)
        yield base
    finally:
        stopping.set()
        await task
        await bot.session.close()
