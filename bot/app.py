"""The bot's wiring: a Dispatcher with the access middleware and the handlers, and
`run`, which long-polls the Bot API (GREENLIGHT_TELEGRAM_API) until stopped."""

from __future__ import annotations

import asyncio
import logging
import sys

import redis
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import BotCommand

from bot import render
from bot.access import Access
from bot.buttons import Cards
from bot.handlers import build_router
from bot.notify import Notifier
from bot.progress import Outcomes, Progress
from bot.retry import ObeyRetryAfter
from bot.settings import BotSettings, SettingsError, load_settings
from deploy.spec import Spec, SpecError, load_specs
from jobs.queue import connect


def build_dispatcher(
    settings: BotSettings,
    connection: redis.Redis,
    specs: dict[str, Spec],
    progress: Progress | None = None,
) -> Dispatcher:
    """The bot's dispatcher; with `progress`, its consumer runs while the bot polls."""
    dispatcher = Dispatcher(
        settings=settings, redis=connection, specs=specs, cards=Cards(connection)
    )
    router = build_router()
    access = Access(settings, connection)
    router.message.middleware(access)
    router.callback_query.middleware(access)
    dispatcher.include_router(router)
    dispatcher.startup.register(register_commands)
    if progress is not None:
        dispatcher.startup.register(progress.start)
        dispatcher.shutdown.register(progress.stop)
    return dispatcher


def build_bot(settings: BotSettings) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api))
    session.middleware(ObeyRetryAfter())
    return Bot(
        settings.token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


async def register_commands(bot: Bot) -> None:
    """The command menu Telegram shows; /help says the same with examples."""
    await bot.set_my_commands(
        [BotCommand(command=name, description=what) for name, (what, _) in render.COMMANDS.items()]
    )


async def run(
    settings: BotSettings, specs: dict[str, Spec], outcomes: Outcomes | None = None
) -> None:
    """Poll until stopped; the progress consumer runs beside polling, stopped with it."""
    bot = build_bot(settings)
    connection = connect(settings.redis_url)
    notifier = outcomes or Notifier(bot, settings)
    progress = Progress(bot, connection, settings.ops_chat, notifier)
    dispatcher = build_dispatcher(settings, connection, specs, progress)
    try:
        await dispatcher.start_polling(bot)
    finally:
        await bot.session.close()


def main() -> int:
    """`greenlight bot`: 2 with one line on stderr when a setting or the spec is wrong."""
    try:
        settings = load_settings()
        specs = load_specs(settings.config)
    except (SettingsError, SpecError) as exc:
        print(f"greenlight bot: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(settings, specs))
    return 0
