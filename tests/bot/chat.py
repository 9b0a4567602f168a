"""The running bot as people see it: they write and press through the emulator, and
read the chat transcript. Every wait is for something to appear, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.bot.conftest import Users

Message = dict[str, Any]
DEADLINE = 10.0


async def until(check: Callable[[], Any], what: str) -> Any:
    """Poll `check` (an awaitable factory) until it returns something truthy."""
    deadline = time.monotonic() + DEADLINE
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class People:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def messages(self, chat_id: int) -> list[Message]:
        """The chat's messages; none for a private chat nobody has written in yet."""
        try:
            transcript = await self.users.transcript(chat_id)
        except AssertionError as exc:
            if "chat not found" in str(exc):
                return []
            raise
        return list(transcript["messages"])  # type: ignore[call-overload]

    async def bot_messages(self, chat_id: int) -> list[Message]:
        return [m for m in await self.messages(chat_id) if m["from_bot"]]

    async def say(self, user: dict[str, Any], text: str, chat: dict[str, Any]) -> Message:
        """`user` writes `text` in `chat`; returns the bot's reply."""
        before = len(await self.bot_messages(chat["id"]))
        await self.say_only(user, text, chat)

        async def reply() -> Message | None:
            sent = await self.bot_messages(chat["id"])
            return sent[before] if len(sent) > before else None

        return await until(reply, f"the bot's reply to {text!r}")  # type: ignore[no-any-return]

    async def say_only(self, user: dict[str, Any], text: str, chat: dict[str, Any]) -> None:
        if chat["type"] == "private":
            await self.users.call("message", user=user, text=text)
        else:
            await self.users.call("message", user=user, chat=chat, text=text)

    async def press(
        self, user: dict[str, Any], chat_id: int, card: Message, data: str, forge: bool = False
    ) -> str:
        """`user` presses the button `data` on `card`; returns the bot's callback answer."""
        counted = await self.users.call("counters")
        answered = counted["callback_answers"]  # type: ignore[index]
        await self.users.call(
            "press",
            user=user,
            chat_id=chat_id,
            message_id=card["message_id"],
            data=data,
            forge=forge,
        )

        async def answer() -> bool:
            now = await self.users.call("counters")
            return bool(now["callback_answers"] > answered)  # type: ignore[index]

        await until(answer, f"the answer to pressing {data!r}")
        return str(await self.card_answer(chat_id, card))

    async def card_answer(self, chat_id: int, card: Message) -> Any:
        for message in await self.messages(chat_id):
            if message["message_id"] == card["message_id"]:
                answer = message["callback_answer"]
                return answer.get("text") if isinstance(answer, dict) else answer
        raise AssertionError("the card is gone")

    async def card(self, chat_id: int, card: Message) -> Message:
        return next(
            m for m in await self.messages(chat_id) if m["message_id"] == card["message_id"]
        )


async def until_healthy(
    session: aiohttp.ClientSession, base: str, task: asyncio.Task[None]
) -> None:
    """Until the bot `serve` runs in `task` answers /health with 200; a start that
    failed fails the test with its own reason."""

    async def healthy() -> bool:
        if task.done():
            task.result()
        try:
            async with session.get(f"{base}/health") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await until(healthy, "the bot to be healthy")
