"""Telegram's flood limits, as the bot keeps to them: about one message or edit a second
in a chat, and at most twenty a minute in a group, supergroup or channel.

`Pace` counts every send and edit the bot makes (`CountSends`, a request middleware on
the bot's session, sees them all: command replies as well as progress edits) and tells
the progress writer how long to wait before its next one. Replies to commands are never
delayed; the progress writer leaves them room instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.methods import (
    EditMessageReplyMarkup,
    EditMessageText,
    Response,
    SendDocument,
    SendMessage,
    SendPhoto,
    TelegramMethod,
)
from aiogram.methods.base import TelegramType

SPACING = 1.0  # seconds between two calls in one chat
# A group allows 20 a minute. A bucket of 3 that refills 13 a minute spends at most
# 3 + 13 = 16 in any minute, leaving room for replies to commands, and smooths a long
# deployment's edits to one every ~5 s instead of a burst of 20 and a silent minute.
GROUP_BURST = 3.0
GROUP_PER_MINUTE = 13.0
COUNTED = (SendMessage, EditMessageText, EditMessageReplyMarkup, SendPhoto, SendDocument)


@dataclass
class _Chat:
    tokens: float
    updated: float
    last: float = float("-inf")
    held_until: float = float("-inf")


class Pace:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._chats: dict[int, _Chat] = {}

    def wait(self, chat_id: int) -> float:
        """Seconds until one more call in `chat_id` keeps to the limits (0: now)."""
        chat = self._refill(chat_id)
        now = self._clock()
        wait = max(chat.held_until - now, chat.last + SPACING - now, 0.0)
        if _grouped(chat_id) and chat.tokens < 1:
            wait = max(wait, (1 - chat.tokens) * 60 / GROUP_PER_MINUTE)
        return wait

    def spend(self, chat_id: int) -> None:
        """One call made in `chat_id`, whoever made it."""
        chat = self._refill(chat_id)
        chat.tokens -= 1
        chat.last = self._clock()

    def refund(self, chat_id: int) -> None:
        """A call Telegram refused does not count against the limits."""
        self._refill(chat_id).tokens += 1

    def hold(self, chat_id: int, seconds: float) -> None:
        """Telegram answered 429 with `retry_after`: nothing more there until then."""
        chat = self._refill(chat_id)
        chat.held_until = max(chat.held_until, self._clock() + seconds)

    def _refill(self, chat_id: int) -> _Chat:
        now = self._clock()
        chat = self._chats.setdefault(chat_id, _Chat(tokens=GROUP_BURST, updated=now))
        chat.tokens = min(GROUP_BURST, chat.tokens + (now - chat.updated) * GROUP_PER_MINUTE / 60)
        chat.updated = now
        return chat


def _grouped(chat_id: int) -> bool:
    """Groups, supergroups and channels have negative ids; private chats positive."""
    return chat_id < 0


class CountSends(BaseRequestMiddleware):
    """Counts every message and edit the bot sends, per chat, into a `Pace`."""

    def __init__(self, pace: Pace) -> None:
        self.pace = pace

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        chat: Any = getattr(method, "chat_id", None)
        if not isinstance(method, COUNTED) or not isinstance(chat, int):
            return await make_request(bot, method)
        self.pace.spend(chat)
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter as exc:
            self.pace.refund(chat)  # refused calls are not counted by Telegram
            self.pace.hold(chat, exc.retry_after)
            raise
        except TelegramBadRequest:
            self.pace.refund(chat)
            raise
