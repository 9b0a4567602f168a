"""The bot's wiring: a Dispatcher with the access middleware and the handlers, and
`run`, which checks the token with getMe, serves the HTTP endpoint (bot/web.py) and
takes updates until stopped: by long polling (GREENLIGHT_TELEGRAM_API), or, when
GREENLIGHT_WEBHOOK_URL is set, from Telegram's POSTs to that URL."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import redis
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, User
from aiohttp import web

from bot import render
from bot.access import Access
from bot.buttons import Cards
from bot.consumer import StreamConsumer
from bot.github.client import GitHubClient
from bot.github.intake import GitHubIntake
from bot.github.notes import ReleaseNotes
from bot.github.relay import Relay
from bot.github.reporter import Reporter
from bot.handlers import build_router
from bot.metrics import CountTelegramCalls
from bot.notify import Notifier
from bot.progress import Outcomes, Progress
from bot.retry import ObeyRetryAfter
from bot.settings import BotSettings, SettingsError, load_settings
from bot.web import build_web_app
from deploy.spec import Spec, SpecError, load_specs
from jobs.queue import connect

STARTUP_TIMEOUT = 10  # seconds getMe may take before the Bot API counts as unreachable
log = logging.getLogger("greenlight.bot")


def build_dispatcher(
    settings: BotSettings,
    connection: redis.Redis,
    specs: dict[str, Spec],
    progress: Progress | None = None,
    releases: ReleaseNotes | None = None,
    background: Sequence[StreamConsumer] = (),
) -> Dispatcher:
    """The bot's dispatcher; with `progress`, its consumer runs while the bot polls, as
    do the `background` consumers (GitHub's relay and reporter)."""
    dispatcher = Dispatcher(
        settings=settings,
        redis=connection,
        specs=specs,
        cards=Cards(connection),
        releases=releases,
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
    for consumer in background:
        dispatcher.startup.register(consumer.start)
        dispatcher.shutdown.register(consumer.stop)
    return dispatcher


class GitHub:
    """What the settings turn on: the webhook (a secret) and, with a token, the
    reports to GitHub's Deployments and release notes from its API."""

    def __init__(
        self, settings: BotSettings, bot: Bot, connection: redis.Redis, specs: dict[str, Spec]
    ) -> None:
        self.intake: GitHubIntake | None = None
        self.client: GitHubClient | None = None
        self.notes: ReleaseNotes | None = None
        self.consumers: list[StreamConsumer] = []
        if settings.github_secret is not None:
            secret = settings.github_secret.get_secret_value()
            self.intake = GitHubIntake(secret, connection, specs)
            self.consumers.append(Relay(bot, connection, specs, settings.ops_chat))
        if settings.github_token is not None:
            self.client = GitHubClient(settings.github_api, settings.github_token)
            self.notes = ReleaseNotes(self.client)
            self.consumers.append(
                Reporter(bot, connection, specs, self.client, settings.ops_chat, settings.log_url)
            )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def build_bot(settings: BotSettings) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api))
    session.middleware(ObeyRetryAfter())
    session.middleware(CountTelegramCalls())  # inside: each attempt a 429 costs is counted
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


class StartupError(Exception):
    """Why the bot cannot start, in one line that never contains the token."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


async def check_bot(bot: Bot, settings: BotSettings) -> User:
    """getMe: the token is one the Bot API accepts, and the Bot API answers at all."""
    try:
        return await bot.get_me(request_timeout=STARTUP_TIMEOUT)
    except TelegramUnauthorizedError:
        raise StartupError(
            f"the Bot API at {settings.telegram_api} rejected GREENLIGHT_BOT_TOKEN "
            "(401 Unauthorized): check the token (BotFather's /token)",
            2,
        ) from None
    except (TelegramNetworkError, TelegramServerError, TimeoutError, OSError) as exc:
        reason = _without(settings, str(exc) or type(exc).__name__)
        raise StartupError(
            f"cannot reach the Bot API at {settings.telegram_api} "
            f"(GREENLIGHT_TELEGRAM_API): {reason}",
            1,
        ) from None


def _without(settings: BotSettings, text: str) -> str:
    """`text` with the token blanked out, whatever the library put in it."""
    return text.replace(settings.token.get_secret_value(), "<GREENLIGHT_BOT_TOKEN>")


async def serve(
    settings: BotSettings,
    specs: dict[str, Spec],
    bot: Bot,
    connection: redis.Redis,
    stopping: asyncio.Event,
    progress: Progress | None = None,
    github: GitHub | None = None,
) -> None:
    """Take updates and serve HTTP until `stopping` is set; the progress consumer (and
    GitHub's, when configured) runs meanwhile. Raises StartupError when the HTTP port
    cannot be bound or the Bot API refuses the webhook."""
    github = github or GitHub(settings, bot, connection, specs)
    dispatcher = build_dispatcher(
        settings, connection, specs, progress, github.notes, github.consumers
    )
    polling: asyncio.Task[None] | None = None
    webhook_set = False

    def running() -> bool:
        if settings.webhook_url:
            return webhook_set and not stopping.is_set()
        return polling is not None and not polling.done() and not stopping.is_set()

    web_app = build_web_app(settings, connection, running, dispatcher, bot)
    if github.intake is not None:
        github.intake.register(web_app)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        try:
            await site.start()
        except OSError as exc:
            where = f"{settings.http_host}:{settings.http_port}"
            raise StartupError(
                f"cannot listen on {where} (GREENLIGHT_HTTP_HOST, GREENLIGHT_HTTP_PORT): "
                f"{exc.strerror or exc}",
                2,
            ) from None
        if settings.webhook_url and settings.webhook_secret is not None:
            await dispatcher.emit_startup(bot=bot, **dispatcher.workflow_data)
            try:
                await bot.set_webhook(
                    settings.webhook_url,
                    secret_token=settings.webhook_secret.get_secret_value(),
                    allowed_updates=dispatcher.resolve_used_update_types(),
                )
            except TelegramAPIError as exc:
                raise StartupError(
                    f"the Bot API refused GREENLIGHT_WEBHOOK_URL: {_without(settings, str(exc))}",
                    2,
                ) from None
            webhook_set = True
            log.info("taking updates at %s (webhook)", settings.webhook_url)
            await stopping.wait()
            await dispatcher.emit_shutdown(bot=bot, **dispatcher.workflow_data)
        else:
            # A webhook left by an earlier run would make every getUpdates a 409.
            await bot.delete_webhook()
            polling = asyncio.create_task(dispatcher.start_polling(bot, handle_signals=False))
            told = asyncio.create_task(stopping.wait())
            await asyncio.wait([polling, told], return_when=asyncio.FIRST_COMPLETED)
            told.cancel()
            if not polling.done():
                await dispatcher.stop_polling()
            await polling
    finally:
        await runner.cleanup()
        await github.close()


async def run(
    settings: BotSettings, specs: dict[str, Spec], outcomes: Outcomes | None = None
) -> None:
    """Until SIGINT or SIGTERM. Raises StartupError when the bot cannot start."""
    bot = build_bot(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        me = await check_bot(bot, settings)
        log.info("signed in as @%s", me.username)
        connection = connect(settings.redis_url)
        github = GitHub(settings, bot, connection, specs)
        notifier = Notifier(bot, settings, notes=github.notes, specs=specs)
        progress = Progress(bot, connection, settings.ops_chat, outcomes or notifier)
        await serve(settings, specs, bot, connection, stopping, progress, github)
    finally:
        await bot.session.close()


def main() -> int:
    """`greenlight bot`: one line on stderr and exit 2 when a setting, the spec or the
    token is wrong; exit 1 when the Bot API cannot be reached."""
    try:
        settings = load_settings()
        specs = load_specs(settings.config)
    except (SettingsError, SpecError) as exc:
        print(f"greenlight bot: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(run(settings, specs))
    except StartupError as exc:
        print(f"greenlight bot: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
