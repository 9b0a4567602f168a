"""The Bot API emulator on a free loopback port, and the real aiogram client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.emulator import Emulator, running_emulator


class Users:
    """The people in the chats, acting through the emulator's control endpoints."""

    def __init__(self, emulator: Emulator, session: aiohttp.ClientSession) -> None:
        self._base = emulator.control_url
        self._session = session

    async def call(self, name: str, **body: object) -> object:
        async with self._session.post(f"{self._base}/{name}", json=body) as response:
            answer = await response.json()
        if not answer["ok"]:
            raise AssertionError(f"control {name} refused: {answer['description']}")
        return answer["result"]

    async def refused(self, name: str, **body: object) -> str:
        async with self._session.post(f"{self._base}/{name}", json=body) as response:
            answer = await response.json()
        assert not answer["ok"], answer
        return str(answer["description"])

    async def transcript(self, chat_id: int) -> dict[str, object]:
        result = await self.call("transcript", chat_id=chat_id)
        assert isinstance(result, dict)
        return result


def client_for(emulator: Emulator, token: str | None = None) -> Bot:
    api = TelegramAPIServer.from_base(emulator.url)
    return Bot(token or emulator.token, session=AiohttpSession(api=api))


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with running_emulator() as running:
        yield running


@pytest.fixture
async def bot(emulator: Emulator) -> AsyncIterator[Bot]:
    client = client_for(emulator)
    yield client
    await client.session.close()


@pytest.fixture
async def users(emulator: Emulator) -> AsyncIterator[Users]:
    async with aiohttp.ClientSession() as session:
        yield Users(emulator, session)
