"""The HTTP face of the emulator: the Bot API, file downloads and control endpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from bot.emulator.control import CONTROLS
from bot.emulator.core import BotIdentity, Telegram
from bot.emulator.errors import METHOD_NOT_FOUND, UNAUTHORIZED, ApiError
from bot.emulator.methods import DOCUMENT_UPLOAD_LIMIT, METHODS
from bot.emulator.params import Params

# Not a secret: the emulator accepts whatever token it is started with.
DEFAULT_TOKEN = "123456:emulated-greenlight-token"  # noqa: S105
_TELEGRAM = web.AppKey("telegram", Telegram)


def _answer(result: object) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _refusal(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.error_code)


async def _bot_api(request: web.Request) -> web.Response:
    telegram = request.app[_TELEGRAM]
    try:
        if request.match_info["token"] != telegram.identity.token:
            raise UNAUTHORIZED
        method = METHODS.get(request.match_info["method"].lower())
        if method is None:
            raise METHOD_NOT_FOUND
        result = await method(telegram, await Params.read(request))
    except ApiError as error:
        if error.error_code == 400:
            telegram.world.counters.bad_requests += 1
        return _refusal(error)
    return _answer(result)


async def _file(request: web.Request) -> web.Response:
    telegram = request.app[_TELEGRAM]
    if request.match_info["token"] != telegram.identity.token:
        return _refusal(UNAUTHORIZED)
    path = request.match_info["path"]
    for stored in telegram.world.files.values():
        if stored.path == path:
            return web.Response(body=stored.data, content_type="application/octet-stream")
    return _refusal(METHOD_NOT_FOUND)


async def _control(request: web.Request) -> web.Response:
    telegram = request.app[_TELEGRAM]
    control = CONTROLS.get(request.match_info["name"])
    if control is None:
        return _refusal(METHOD_NOT_FOUND)
    body: dict[str, object] = dict(request.query)
    if request.can_read_body:
        try:
            posted = await request.json()
        except json.JSONDecodeError:
            return _refusal(ApiError(400, "Bad Request: control body must be JSON"))
        if isinstance(posted, dict):
            body.update(posted)
    try:
        return _answer(await control(telegram, body))
    except ApiError as error:
        return _refusal(error)
    except (TypeError, ValueError) as error:
        return _refusal(ApiError(400, f"Bad Request: {error}"))


def build_app(telegram: Telegram) -> web.Application:
    """The aiohttp application serving one emulated bot."""
    # Room for a 50 MB document plus the form around it.
    app = web.Application(client_max_size=DOCUMENT_UPLOAD_LIMIT + 1024 * 1024)
    app[_TELEGRAM] = telegram
    app.router.add_route("*", "/bot{token}/{method}", _bot_api)
    app.router.add_get("/file/bot{token}/{path:.+}", _file)
    app.router.add_route("*", "/_control/{name}", _control)

    async def stop_delivery(app: web.Application) -> None:
        await app[_TELEGRAM].updates.stop()

    app.on_cleanup.append(stop_delivery)
    return app


class Emulator:
    """A running emulator: its base URL, token and state."""

    def __init__(self, telegram: Telegram, runner: web.AppRunner, url: str) -> None:
        self.telegram = telegram
        self.runner = runner
        self.url = url

    @property
    def token(self) -> str:
        return self.telegram.identity.token

    @property
    def control_url(self) -> str:
        return f"{self.url}/_control"


async def start_emulator(
    port: int = 0,
    token: str = DEFAULT_TOKEN,
    username: str = "greenlight_bot",
    pacing: bool = True,
) -> Emulator:
    """Serve the emulator on 127.0.0.1:`port` (0 picks a free port)."""
    telegram = Telegram(BotIdentity(token, username, "Greenlight"))
    telegram.pacer.enabled = pacing
    # A long poll in flight would hold a graceful stop for its whole timeout (10 s).
    runner = web.AppRunner(build_app(telegram), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return Emulator(telegram, runner, f"http://127.0.0.1:{bound_port}")


@asynccontextmanager
async def running_emulator(
    token: str = DEFAULT_TOKEN, username: str = "greenlight_bot", pacing: bool = True
) -> AsyncIterator[Emulator]:
    """An emulator on a free loopback port for the length of the block."""
    emulator = await start_emulator(0, token, username, pacing)
    try:
        yield emulator
    finally:
        await emulator.runner.cleanup()
