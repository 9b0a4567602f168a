"""Who may do what, in one middleware: commands only in the ops chat, only from listed
people, only with the role a handler's `role` flag names. A refusal changes nothing,
is answered where answering is appropriate, and is audited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, User

from bot import render
from bot.settings import BotSettings, Role
from jobs.streams import AuditEntry, audit

MEMBER = "member"  # any listed person, whatever the role
# A group's replies are limited to about 20 a minute: someone who keeps sending refused
# commands there hears the refusal once a minute (each is still audited), so they cannot
# use up the replies the ops chat needs.
REFUSAL_KEY = "greenlight:bot:refused:{chat}:{user}"
REFUSAL_QUIET_SECONDS = 60
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def who(user: User) -> str:
    """The name the jobs API and the audit know a person by: the stable Telegram id."""
    return f"tg:{user.id}"


class Access(BaseMiddleware):
    def __init__(self, settings: BotSettings, connection: redis.Redis) -> None:
        self.settings = settings
        self.redis = connection

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        need: Role | str | None = get_flag(data, "role")
        user: User | None = data.get("event_from_user")
        chat: Chat | None = data.get("event_chat")
        if need is None:  # open to anyone: /whoami
            return await handler(event, data)
        if user is None or chat is None:
            return None
        roles = self.settings.roles_of(user.id)
        reply: str | None
        if chat.id != self.settings.ops_chat:
            reason = f"outside the ops chat (chat {chat.id})"
            if chat.type == "private":
                reply = render.ops_chat_only() if roles else render.not_listed()
            else:  # another group: say nothing there
                reply = None
        elif not roles:
            reason, reply = "not on the list", render.not_listed()
        elif need != MEMBER and need not in roles:
            reason, reply = f"needs the {need} role", render.needs_role(Role(need), roles)
        else:
            data["who"] = who(user)
            return await handler(event, data)
        await asyncio.to_thread(
            audit,
            self.redis,
            AuditEntry(
                who=who(user),
                action=_action(event, data),
                target=f"chat:{chat.id}",
                result="refused",
                reason=reason,
            ),
        )
        if isinstance(event, CallbackQuery):
            await event.answer(reply or render.ops_chat_only(), show_alert=True)
        elif (
            isinstance(event, Message) and reply is not None and await self._may_answer(chat, user)
        ):
            await event.answer(reply)
        return None

    async def _may_answer(self, chat: Chat, user: User) -> bool:
        """Always in a private chat; in a group, the person's first refusal this minute."""
        if chat.type == "private":
            return True
        key = REFUSAL_KEY.format(chat=chat.id, user=user.id)
        first = await asyncio.to_thread(self.redis.set, key, 1, nx=True, ex=REFUSAL_QUIET_SECONDS)
        return bool(first)


def _action(event: TelegramObject, data: dict[str, Any]) -> str:
    if isinstance(event, CallbackQuery):
        decided = data.get("callback_data")
        return str(getattr(decided, "action", "press"))
    command = data.get("command")
    return str(getattr(command, "command", "command"))
