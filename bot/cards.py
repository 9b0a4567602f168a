"""Approval cards: the message that asks someone other than the requester to say yes,
for a /deploy in the chat and for a release the webhook brought alike. Once decided,
the card becomes the deployment's progress message."""

from __future__ import annotations

import asyncio

import redis
from aiogram import Bot
from aiogram.types import Message

from bot import render
from bot.buttons import Card, Cards, decision_buttons
from bot.progress import ProgressStore
from jobs.records import DeploymentRecord


async def send_request_card(
    bot: Bot,
    chat_id: int,
    connection: redis.Redis,
    record: DeploymentRecord,
    requester: str,
    notes: render.Notes | None = None,
) -> tuple[Message, int]:
    """Post the card with Approve and Reject; the message and the card's handle."""
    card = Card(deployment=record.id, requester=requester, notes=notes)
    handle = await asyncio.to_thread(Cards(connection).create, card)
    sent = await bot.send_message(
        chat_id,
        render.request_card(record, requester, notes=notes),
        reply_markup=decision_buttons(handle),
    )
    await asyncio.to_thread(
        ProgressStore(connection).adopt, record.id, sent.chat.id, sent.message_id
    )
    return sent, handle
