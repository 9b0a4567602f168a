"""The bot's own HTTP server (aiohttp): `GET /health`, and in webhook mode the route
Telegram POSTs updates to. The GitHub webhook mounts here later: `build_web_app`
returns a plain `web.Application` to add routes to.

It binds GREENLIGHT_HTTP_HOST (loopback by default); a reverse proxy with TLS stands
in front of it when Telegram or GitHub must reach it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import redis
from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.metrics import METRICS_PATH, metrics_handler
from bot.settings import BotSettings

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (the name of a header)
HEALTH_PATH = "/health"
REDIS_PING_SECONDS = 1.0
log = logging.getLogger("greenlight.bot.web")


def webhook_path(settings: BotSettings) -> str:
    """Where Telegram's POSTs arrive: the path of GREENLIGHT_WEBHOOK_URL (a proxy in
    front keeps the path), or /telegram for a URL without one."""
    path = urlsplit(settings.webhook_url or "").path
    return path if path not in ("", "/") else "/telegram"


class SecretWebhook(SimpleRequestHandler):
    """aiogram's webhook handler, with the secret-token check done first, on bytes in
    constant time (a header with characters outside ASCII is a refusal, not a crash),
    and every refusal logged without the header's value."""

    def __init__(self, dispatcher: Dispatcher, bot: Bot, secret: str) -> None:
        super().__init__(dispatcher, bot, secret_token=secret)
        self._secret = secret.encode()

    async def handle(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER)
        offered = (given or "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(offered, self._secret):
            log.warning(
                "webhook: refused a POST from %s: %s secret token",
                request.remote,
                "no" if given is None else "a wrong",
            )
            return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
        return await super().handle(request)

    async def close(self) -> None:
        # The bot's session belongs to `run`, which closes it once, last.
        return None


def build_web_app(
    settings: BotSettings,
    connection: redis.Redis,
    bot_running: Callable[[], bool],
    dispatcher: Dispatcher | None = None,
    bot: Bot | None = None,
) -> web.Application:
    """/health always; the webhook route when GREENLIGHT_WEBHOOK_URL is set (then the
    dispatcher and the bot are needed)."""
    app = web.Application(client_max_size=1024**2)
    mode = "webhook" if settings.webhook_url else "polling"

    async def health(_: web.Request) -> web.Response:
        """200 when Redis answers and the bot is taking updates; 503 saying which not."""
        try:
            redis_ok = bool(
                await asyncio.wait_for(asyncio.to_thread(connection.ping), REDIS_PING_SECONDS)
            )
        except (TimeoutError, redis.RedisError, OSError):
            redis_ok = False
        running = bot_running()
        body = {
            "status": "ok" if redis_ok and running else "unavailable",
            "redis": "ok" if redis_ok else "not answering",
            "bot": "running" if running else "not running",
            "mode": mode,
        }
        return web.json_response(body, status=200 if redis_ok and running else 503)

    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get(METRICS_PATH, metrics_handler())
    if settings.webhook_url:
        if dispatcher is None or bot is None or settings.webhook_secret is None:
            raise ValueError("webhook mode needs the dispatcher, the bot and the secret")
        secret = settings.webhook_secret.get_secret_value()
        SecretWebhook(dispatcher, bot, secret).register(app, path=webhook_path(settings))
    return app
