"""How the bot starts and takes updates: webhook mode with Telegram's secret-token
header, the HTTP health endpoint, and the `greenlight bot` process itself (a `.env`
file, a token the Bot API rejects, a Bot API that is not there, SIGTERM)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import yaml

from bot.app import StartupError, build_bot, serve
from bot.emulator import Emulator
from bot.settings import BotSettings, SettingsError, load_settings
from bot.web import build_web_app
from jobs.queue import queue
from jobs.records import RecordStore
from tests.bot.chat import People, until
from tests.bot.conftest import Users
from tests.bot.running import DANA, OPS, settings_for
from tests.bot.running import serving as serve_bot
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "webhook-Secret_0123456789"
SPEC = {
    "app": "shop",
    "image": "registry.example.com/acme/shop",
    "default_environment": "production",
    "environments": {
        "production": {
            "public_url": "http://10.0.0.1",
            "ssh": {"key": "k", "known_hosts": "kh"},
            "hosts": [{"name": "h1", "address": "10.0.0.1"}],
        }
    },
}


def private(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "type": "private"}


def serving(settings: BotSettings, r: redis.Redis) -> AbstractAsyncContextManager[str]:
    """`serve` in this process until the block ends; yields the HTTP server's base URL."""
    from deploy.spec import parse_spec

    return serve_bot(settings, {"shop": parse_spec(SPEC)}, r)


async def get_json(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_webhook_mode_takes_updates_and_refuses_a_wrong_secret(
    emulator: Emulator, users: Users, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/updates"
    settings = settings_for(
        emulator,
        GREENLIGHT_WEBHOOK_URL=url,
        GREENLIGHT_WEBHOOK_SECRET=SECRET,
        GREENLIGHT_HTTP_PORT=port,
    )
    for chat in (OPS,):
        await users.call("chat", **chat)
    async with serving(settings, r) as base:
        status, body = await get_json(f"{base}/health")
        assert (status, body) == (
            200,
            {"status": "ok", "redis": "ok", "bot": "running", "mode": "webhook"},
        )
        people = People(users)
        me = await people.say(DANA, "/whoami", private(DANA))
        assert me["text"] == "You are @dana, id 1001. Roles: deployer."
        reply = await people.say(DANA, "/deploy v1.0.1", OPS)  # through the webhook
        assert reply["text"].startswith("🚦 deploy of v1.0.1 to shop/production")

        forged = {
            "update_id": 999_001,
            "message": {
                "message_id": 77,
                "date": 1_700_000_000,
                "chat": OPS,
                "from": {"id": 1002, "is_bot": False, "first_name": "Bob"},
                "text": "/rollback",
                "entities": [{"type": "bot_command", "offset": 0, "length": 9}],
            },
        }
        async with aiohttp.ClientSession() as session:
            for headers in (
                {},
                {"X-Telegram-Bot-Api-Secret-Token": "guess"},
                {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1]},
                {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"},
                {"X-Telegram-Bot-Api-Secret-Token": "sécret".encode().decode("latin-1")},
            ):
                async with session.post(url, json=forged, headers=headers) as response:
                    assert response.status == 401, headers
        await people.say(DANA, "/whoami", private(DANA))  # later updates still come in
    assert [rec.kind for rec in RecordStore(r).recent("shop", "production")] == ["deploy"]
    assert queue(r).count == 0
    refusals = [rec.getMessage() for rec in caplog.records if "refused a POST" in rec.getMessage()]
    assert len(refusals) == 5
    assert refusals[0] == "webhook: refused a POST from 127.0.0.1: no secret token"
    assert refusals[1] == "webhook: refused a POST from 127.0.0.1: a wrong secret token"
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert SECRET not in logged and SECRET[:-1] not in logged and "guess" not in logged
    assert emulator.token not in logged
    for chat in (OPS, private(DANA)):
        transcript = str(await People(users).messages(chat["id"]))
        assert SECRET not in transcript and emulator.token not in transcript
    info = await emulator_call(emulator, "getWebhookInfo")
    assert info["url"] == url


async def emulator_call(emulator: Emulator, method: str) -> dict[str, Any]:
    url = f"{emulator.url}/bot{emulator.token}/{method}"
    async with aiohttp.ClientSession() as session, session.post(url) as response:
        answer = await response.json()
    assert answer["ok"], answer
    return dict(answer["result"])


async def test_health_is_503_without_redis_or_without_the_bot(
    emulator: Emulator, users: Users, r: redis.Redis
) -> None:
    port = free_port()
    settings = settings_for(emulator, GREENLIGHT_HTTP_PORT=port)
    async with serving(settings, r) as base:
        status, body = await get_json(f"{base}/health")
        assert (status, body["mode"], body["bot"]) == (200, "polling", "running")
        # The bot takes updates by polling meanwhile.
        me = await People(users).say(DANA, "/whoami", private(DANA))
        assert me["text"].startswith("You are @dana")

    gone = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    for connection, running, want in ((gone, True, "not answering"), (r, False, "ok")):
        app = build_web_app(settings, connection, lambda running=running: running)
        client_port = free_port()
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", client_port).start()
        try:
            status, body = await get_json(f"http://127.0.0.1:{client_port}/health")
        finally:
            await runner.cleanup()
        assert status == 503 and body["status"] == "unavailable" and body["redis"] == want
        assert body["bot"] == ("running" if running else "not running")


async def test_a_port_in_use_is_one_line_naming_the_variables(
    emulator: Emulator, r: redis.Redis
) -> None:
    from deploy.spec import parse_spec

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_for(emulator, GREENLIGHT_HTTP_PORT=port)
        bot = build_bot(settings)
        try:
            with pytest.raises(StartupError) as caught:
                await serve(settings, {"shop": parse_spec(SPEC)}, bot, r, asyncio.Event())
        finally:
            await bot.session.close()
    assert str(caught.value) == (
        f"cannot listen on 127.0.0.1:{port} (GREENLIGHT_HTTP_HOST, GREENLIGHT_HTTP_PORT): "
        f"error while attempting to bind on address ('127.0.0.1', {port}): address already in use"
    )
    assert caught.value.exit_code == 2


def test_the_http_server_binds_loopback_unless_told_otherwise() -> None:
    settings = load_settings(GREENLIGHT_BOT_TOKEN="1:x", GREENLIGHT_OPS_CHAT=-1)
    assert (settings.http_host, settings.http_port, settings.webhook_url) == (
        "127.0.0.1",
        8090,
        None,
    )


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (
            {"GREENLIGHT_WEBHOOK_URL": "https://bot.example.com/telegram"},
            "GREENLIGHT_WEBHOOK_SECRET: Value error, is required when GREENLIGHT_WEBHOOK_URL",
        ),
        (
            {
                "GREENLIGHT_WEBHOOK_URL": "https://bot.example.com/t",
                "GREENLIGHT_WEBHOOK_SECRET": "a b",
            },
            "GREENLIGHT_WEBHOOK_SECRET: Value error, must be 1-256 characters of A-Z",
        ),
        (
            {"GREENLIGHT_WEBHOOK_SECRET": "s3cret-without-a-url"},
            "GREENLIGHT_WEBHOOK_SECRET: Value error, is set but GREENLIGHT_WEBHOOK_URL is not",
        ),
        ({"GREENLIGHT_WEBHOOK_URL": "bot.example.com"}, "GREENLIGHT_WEBHOOK_URL: Value error"),
        ({"GREENLIGHT_HTTP_PORT": "99999"}, "GREENLIGHT_HTTP_PORT: Input should be less than"),
        ({"GREENLIGHT_STATUS_TIMEOUT": "0"}, "GREENLIGHT_STATUS_TIMEOUT: Input should be greater"),
    ],
)
def test_webhook_and_http_settings_fail_naming_the_variable(
    given: dict[str, str], problem: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(GREENLIGHT_BOT_TOKEN="1:x", GREENLIGHT_OPS_CHAT=-1, **given)
    assert str(caught.value).startswith(problem)
    assert "a b" not in str(caught.value) and "s3cret" not in str(caught.value)


async def greenlight_bot(
    cwd: Path, env: dict[str, str], stop_when_healthy: int | None = None
) -> tuple[int, str]:
    """`greenlight bot` as a process in `cwd` with only `env` (and PATH/PYTHONPATH);
    SIGTERM once /health on `stop_when_healthy` answers 200. Returns exit code, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "greenlight",
        "bot",
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if stop_when_healthy is not None:

        async def healthy() -> bool:
            if process.returncode is not None:
                return True
            try:
                status, _ = await get_json(f"http://127.0.0.1:{stop_when_healthy}/health")
            except aiohttp.ClientError:
                return False
            return status == 200

        await until(healthy, "the bot process to be healthy")
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_the_bot_process_reads_dotenv_serves_health_and_stops_on_sigterm(
    emulator: Emulator, redis_server: str, tmp_path: Path
) -> None:
    (tmp_path / "greenlight.yml").write_text(yaml.safe_dump(SPEC))
    port = free_port()
    (tmp_path / ".env").write_text(
        f"GREENLIGHT_BOT_TOKEN={emulator.token}\n"
        f"GREENLIGHT_TELEGRAM_API={emulator.url}\n"
        "GREENLIGHT_OPS_CHAT=-100500\n"
        'GREENLIGHT_PEOPLE=\'{"1001": ["deployer"]}\'\n'
        f"REDIS_URL={redis_server}\n"
        f"GREENLIGHT_CONFIG={tmp_path / 'greenlight.yml'}\n"
        f"GREENLIGHT_HTTP_PORT={port}\n"
    )
    code, stderr = await greenlight_bot(tmp_path, {}, stop_when_healthy=port)
    assert code == 0, stderr
    assert "signed in as @greenlight_bot" in stderr
    assert emulator.token not in stderr


async def test_a_token_the_bot_api_rejects_is_one_line_naming_the_variable(
    emulator: Emulator, redis_server: str, tmp_path: Path
) -> None:
    (tmp_path / "greenlight.yml").write_text(yaml.safe_dump(SPEC))
    wrong = "123456:not-the-token-the-api-knows"
    env = {
        "GREENLIGHT_BOT_TOKEN": wrong,
        "GREENLIGHT_TELEGRAM_API": emulator.url,
        "GREENLIGHT_OPS_CHAT": "-100500",
        "REDIS_URL": redis_server,
        "GREENLIGHT_CONFIG": str(tmp_path / "greenlight.yml"),
    }
    code, stderr = await greenlight_bot(tmp_path, env)
    assert (code, stderr) == (
        2,
        f"greenlight bot: the Bot API at {emulator.url} rejected GREENLIGHT_BOT_TOKEN "
        "(401 Unauthorized): check the token (BotFather's /token)\n",
    )
    nowhere = f"http://127.0.0.1:{free_port()}"
    code, stderr = await greenlight_bot(tmp_path, {**env, "GREENLIGHT_TELEGRAM_API": nowhere})
    assert code == 1
    assert stderr.startswith(
        f"greenlight bot: cannot reach the Bot API at {nowhere} (GREENLIGHT_TELEGRAM_API): "
    )
    assert len(stderr.splitlines()) == 1 and wrong not in stderr
