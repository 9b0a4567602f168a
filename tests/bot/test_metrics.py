"""The bot's /metrics as Prometheus scrapes it from the bot's HTTP server, while the
bot's client and its progress consumer run against the Bot API emulator and a
private Redis: Telegram's 429s and refusals, the event stream's lag and backlog,
and the jobs layer's metrics recorded in the bot's process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
import redis
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiohttp import web

from bot.app import build_bot
from bot.emulator import Emulator
from bot.metrics import Backlog
from bot.progress import GROUP, Progress
from bot.settings import BotSettings
from bot.web import build_web_app
from deploy.events import PhaseStarted, Warned
from jobs import api
from jobs.streams import EVENTS_KEY, append_event
from tests.bot.chat import until
from tests.bot.conftest import Users
from tests.bot.running import OPS, settings_for
from tests.jobs.test_api import make_spec
from tests.metrics_text import scrape, value
from tests.redis_server import free_port

SPECS = {"shop": make_spec()}


class Scraper:
    """GET /metrics on the bot's HTTP server; `delta` is a sample's change since the
    first scrape."""

    def __init__(self, base: str) -> None:
        self.url = f"{base}/metrics"
        self.first = ""

    async def text(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(self.url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return await response.text()

    async def delta(self, name: str, **labels: str) -> float:
        return value(await self.text(), name, **labels) - value(self.first, name, **labels)


@asynccontextmanager
async def running(settings: BotSettings, r: redis.Redis) -> AsyncIterator[tuple[Bot, Scraper]]:
    """The bot's HTTP server (the app `serve` runs) and its progress consumer, with the
    Bot API client `greenlight bot` builds, until the block ends. (Polling is left out:
    stopping a long poll takes seconds, and no metric here needs an update.)"""
    bot = build_bot(settings)
    progress = Progress(bot, r, OPS["id"])
    await progress.start()
    runner = web.AppRunner(build_web_app(settings, r, lambda: True))
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        scraper = Scraper(f"http://{settings.http_host}:{settings.http_port}")
        scraper.first = await scraper.text()
        yield bot, scraper
    finally:
        await progress.stop()
        await runner.cleanup()
        await bot.session.close()


@pytest.fixture
async def ops_chat(users: Users) -> None:
    await users.call("chat", **OPS)


@pytest.mark.usefixtures("ops_chat")
async def test_a_429_and_a_refusal_from_the_bot_api_are_counted_by_method(
    emulator: Emulator, users: Users, r: redis.Redis
) -> None:
    settings = settings_for(emulator, GREENLIGHT_HTTP_PORT=free_port())
    async with running(settings, r) as (bot, metrics):
        await users.call("flood", count=1, retry_after=1)
        sent = await bot.send_message(OPS["id"], "after one 429")  # waited out, then sent
        with pytest.raises(TelegramBadRequest):
            await bot.edit_message_text("gone", chat_id=OPS["id"], message_id=sent.message_id + 99)

        errors = "greenlight_telegram_errors_total"
        assert await metrics.delta(errors, method="sendMessage", kind="too_many_requests") == 1
        assert await metrics.delta(errors, method="editMessageText", kind="bad_request") == 1
        assert await metrics.delta(errors, kind="too_many_requests") == 1
        calls = "greenlight_telegram_requests_total"
        assert await metrics.delta(calls, method="sendMessage") == 2
        assert await metrics.delta(calls, method="editMessageText") == 1


@pytest.mark.usefixtures("ops_chat")
async def test_events_read_by_the_consumer_move_the_lag_and_the_backlog(
    emulator: Emulator, r: redis.Redis
) -> None:
    # Three events the workers stamped two seconds ago, waiting for the bot.
    r.xgroup_create(EVENTS_KEY, GROUP, id="$", mkstream=True)
    stamped = time.time() - 2
    for phase in ("prepare", "preflight"):
        append_event(r, PhaseStarted(deployment="d-1", phase=phase, at=stamped))
    append_event(r, Warned(deployment="d-1", message="slow host", at=stamped))
    Backlog(r, EVENTS_KEY, GROUP).measure()
    assert value(scrape(), "greenlight_bot_events_unread") == 3
    lag = "greenlight_bot_event_lag_seconds"
    lag_before = value(scrape(), f"{lag}_count"), value(scrape(), f"{lag}_sum")

    settings = settings_for(emulator, GREENLIGHT_HTTP_PORT=free_port())
    async with running(settings, r) as (_, metrics):

        async def caught_up() -> bool:
            text = await metrics.text()
            read = value(text, f"{lag}_count") - lag_before[0]
            return read == 3 and value(text, "greenlight_bot_events_unread") == 0

        await until(caught_up, "the consumer to read the three events")
        text = await metrics.text()
        assert value(text, f"{lag}_sum") - lag_before[1] >= 3 * 2
        assert value(text, f"{lag}_bucket", le="1.0") == value(
            metrics.first, f"{lag}_bucket", le="1.0"
        )
        assert value(text, "greenlight_bot_events_pending") == 0


async def test_a_deploy_refused_in_the_bots_process_shows_on_its_metrics(
    emulator: Emulator, r: redis.Redis
) -> None:
    settings = settings_for(emulator, GREENLIGHT_HTTP_PORT=free_port())
    async with running(settings, r) as (_, metrics):
        # What a /deploy handler does in the bot: the jobs API, in a thread.
        for version in ("v1.0.1", "v1.0.2"):
            await asyncio.to_thread(
                api.request_deployment, r, SPECS, app=None, env="staging", version=version, who="al"
            )
        refusals = "greenlight_lock_refusals_total"
        assert await metrics.delta(refusals, env="staging", lock="lease", reason="busy") == 1
        assert "# TYPE greenlight_phase_duration_seconds histogram" in await metrics.text()
