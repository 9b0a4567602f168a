"""One emulated Telegram as one bot sees it: its identity, chats, updates and limits."""

from __future__ import annotations

from dataclasses import dataclass

from bot.emulator.errors import bad_request, too_many_requests
from bot.emulator.pacing import Pacer
from bot.emulator.state import Chat, World
from bot.emulator.updates import UpdateQueue

JsonObject = dict[str, object]


@dataclass(frozen=True)
class BotIdentity:
    token: str
    username: str
    first_name: str

    def __post_init__(self) -> None:
        bot_id, _, secret = self.token.partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError(f"a bot token reads <bot id>:<secret>, not {self.token!r}")

    @property
    def id(self) -> int:
        return int(self.token.partition(":")[0])

    def as_user(self) -> JsonObject:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }


class Telegram:
    """The state behind both the Bot API and the control endpoints."""

    def __init__(self, identity: BotIdentity) -> None:
        self.identity = identity
        self.world = World()
        self.updates = UpdateQueue()
        self.pacer = Pacer()

    def paced(self, chat: Chat) -> None:
        """Count one message or edit in `chat`, or refuse it with a 429."""
        wait = self.pacer.retry_after(chat.id, private=chat.type == "private")
        if wait is not None:
            self.world.counters.too_many_requests += 1
            raise too_many_requests(wait)

    def ensure_chat(self, description: JsonObject) -> Chat:
        """The chat a control call names, created on first mention."""
        try:
            chat_id = int(str(description["id"]))
        except (KeyError, ValueError):
            raise bad_request("chat id is required") from None
        chat = self.world.chats.get(chat_id)
        chat_type = str(description.get("type", "private" if chat_id > 0 else "supergroup"))
        if chat_type not in ("private", "group", "supergroup", "channel"):
            raise bad_request(f"unknown chat type {chat_type}")
        if chat is None:
            chat = Chat(id=chat_id, type=chat_type)
            self.world.chats[chat_id] = chat
        for key in ("title", "username", "first_name"):
            if isinstance(description.get(key), str):
                setattr(chat, key, description[key])
        return chat

    async def reset(self) -> None:
        """Forget every chat, update, file, counter and webhook; keep the bot."""
        await self.updates.stop()
        self.world = World()
        self.updates = UpdateQueue()
        enabled = self.pacer.enabled
        self.pacer = Pacer()
        self.pacer.enabled = enabled
