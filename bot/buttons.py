"""Approval buttons. A button carries an action and a short request handle, never a
command; the handle names a card kept in Redis (deployment id and requester), so the
payload stays far below Telegram's 64 bytes whatever the deployment id's length."""

from __future__ import annotations

from enum import StrEnum

import redis
from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import BaseModel

from bot.render import Notes

CARD_KEY = "greenlight:bot:card:{handle}"
CARD_COUNTER = "greenlight:bot:cards"
CARD_DAYS = 30


class Decision(StrEnum):
    approve = "approve"
    reject = "reject"


class Decide(CallbackData, prefix="gl"):
    action: Decision
    request: int


class Card(BaseModel):
    deployment: str
    requester: str  # rendered already (escaped)
    notes: Notes | None = None


class Cards:
    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def create(self, card: Card) -> int:
        handle = int(self.redis.incr(CARD_COUNTER))
        key = CARD_KEY.format(handle=handle)
        self.redis.set(key, card.model_dump_json(), ex=CARD_DAYS * 86_400)
        return handle

    def load(self, handle: int) -> Card | None:
        raw = self.redis.get(CARD_KEY.format(handle=handle))
        return Card.model_validate_json(raw) if isinstance(raw, bytes | str) else None


def decision_buttons(handle: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text="✅ Approve",
                    callback_data=Decide(action=Decision.approve, request=handle).pack(),
                ),
                InlineKeyboardButton(
                    text="❌ Reject",
                    callback_data=Decide(action=Decision.reject, request=handle).pack(),
                ),
            ]
        ]
    )
