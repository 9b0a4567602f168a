"""A 429's `retry_after` is obeyed for what the bot sends: replies, cards, photos and
documents wait as Telegram says and go again, rather than being lost. Edits are paced
and coalesced by the progress feed, and a callback answer or a poll is useless late,
so those are left to their callers."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import SendDocument, SendMessage, SendPhoto, TelegramMethod
from aiogram.methods.base import Response, TelegramType

log = logging.getLogger(__name__)
SENDS = (SendMessage, SendPhoto, SendDocument)
ATTEMPTS = 4
LONGEST_WAIT = 120  # seconds; Telegram's flood waits are usually well under a minute


class ObeyRetryAfter(BaseRequestMiddleware):
    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if not isinstance(method, SENDS) or attempt == ATTEMPTS:
                    raise
                if exc.retry_after > LONGEST_WAIT:
                    raise
                log.warning(
                    "%s: Telegram asks to wait %d s (attempt %d of %d)",
                    type(method).__name__,
                    exc.retry_after,
                    attempt,
                    ATTEMPTS,
                )
                await asyncio.sleep(exc.retry_after)
        raise AssertionError("unreachable")
