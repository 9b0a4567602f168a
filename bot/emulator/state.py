"""What the emulated Telegram remembers: chats, messages with their edit history, files."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from bot.emulator.errors import bad_request

JsonObject = dict[str, object]


@dataclass
class StoredFile:
    """An uploaded file, kept whole so a test can read back what the bot sent."""

    file_id: str
    file_unique_id: str
    path: str
    data: bytes
    file_name: str | None
    mime_type: str | None

    def as_file(self) -> JsonObject:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.path,
        }


@dataclass
class Revision:
    """One version of a message's content (the current one, or an earlier one)."""

    text: str | None
    entities: list[JsonObject]
    reply_markup: JsonObject | None
    at: float = field(default_factory=time.time, compare=False)  # when sent or edited to this


@dataclass
class StoredMessage:
    message_id: int
    chat: Chat
    sender: JsonObject | None
    date: int
    content: Revision
    history: list[Revision] = field(default_factory=list)
    edit_date: int | None = None
    deleted: bool = False
    from_bot: bool = False
    caption_mode: bool = False
    photo: StoredFile | None = None
    document: StoredFile | None = None

    def as_message(self) -> JsonObject:
        """The Bot API `Message` object."""
        message: JsonObject = {
            "message_id": self.message_id,
            "date": self.date,
            "chat": self.chat.as_chat(),
        }
        if self.sender is not None:
            message["from"] = self.sender
        if self.chat.type == "channel":
            message["sender_chat"] = self.chat.as_chat()
        if self.edit_date is not None:
            message["edit_date"] = self.edit_date
        text_key, entities_key = (
            ("caption", "caption_entities")
            if self.caption_mode
            else (
                "text",
                "entities",
            )
        )
        if self.content.text:
            message[text_key] = self.content.text
        if self.content.entities:
            message[entities_key] = self.content.entities
        if self.content.reply_markup is not None:
            message["reply_markup"] = self.content.reply_markup
        if self.photo is not None:
            message["photo"] = [photo_size(self.photo)]
        if self.document is not None:
            document: JsonObject = {
                "file_id": self.document.file_id,
                "file_unique_id": self.document.file_unique_id,
                "file_size": len(self.document.data),
            }
            if self.document.file_name:
                document["file_name"] = self.document.file_name
            if self.document.mime_type:
                document["mime_type"] = self.document.mime_type
            message["document"] = document
        return message


def photo_size(file: StoredFile) -> JsonObject:
    """A `PhotoSize`; PNG dimensions are read from the header, others report 0."""
    width = height = 0
    if file.data[:8] == b"\x89PNG\r\n\x1a\n" and len(file.data) >= 24:
        width = int.from_bytes(file.data[16:20], "big")
        height = int.from_bytes(file.data[20:24], "big")
    return {
        "file_id": file.file_id,
        "file_unique_id": file.file_unique_id,
        "width": width,
        "height": height,
        "file_size": len(file.data),
    }


@dataclass
class Chat:
    id: int
    type: str  # private, group, supergroup, channel
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    next_message_id: int = 1

    def as_chat(self) -> JsonObject:
        chat: JsonObject = {"id": self.id, "type": self.type}
        for key in ("title", "username", "first_name"):
            if (value := getattr(self, key)) is not None:
                chat[key] = value
        return chat

    def add_message(
        self, sender: JsonObject | None, content: Revision, from_bot: bool
    ) -> StoredMessage:
        message = StoredMessage(
            message_id=self.next_message_id,
            chat=self,
            sender=sender,
            date=int(time.time()),
            content=content,
            from_bot=from_bot,
        )
        self.messages[message.message_id] = message
        self.next_message_id += 1
        return message


@dataclass
class Counters:
    """What the bot did, for tests and rehearsals to check pacing and volume."""

    sent: int = 0
    edited: int = 0
    deleted: int = 0
    callback_answers: int = 0
    too_many_requests: int = 0
    bad_requests: int = 0


@dataclass
class CallbackQuery:
    query_id: str
    chat_id: int
    message_id: int
    data: str
    answered: bool = False
    answer: JsonObject | None = None


class World:
    """All chats, files and callback queries of one emulated Telegram."""

    def __init__(self) -> None:
        self.chats: dict[int, Chat] = {}
        self.files: dict[str, StoredFile] = {}
        self.callback_queries: dict[str, CallbackQuery] = {}
        self.counters = Counters()
        self.commands: dict[str, list[JsonObject]] = {}
        self._ids = itertools.count(1)

    def new_id(self) -> int:
        return next(self._ids)

    def chat(self, chat_id: object) -> Chat:
        """The chat by numeric id or `@username`, or Telegram's "chat not found"."""
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self.chats.values():
                if chat.username and f"@{chat.username}".lower() == chat_id.lower():
                    return chat
            raise bad_request("chat not found")
        try:
            numeric = int(str(chat_id))
        except ValueError:
            raise bad_request("chat not found") from None
        if numeric not in self.chats:
            raise bad_request("chat not found")
        return self.chats[numeric]

    def store_file(
        self, kind: str, data: bytes, file_name: str | None, mime_type: str | None
    ) -> StoredFile:
        number = self.new_id()
        suffix = (file_name or "").rpartition(".")[2] if file_name and "." in file_name else "bin"
        stored = StoredFile(
            file_id=f"{kind}-{number}-emulated",
            file_unique_id=f"u{number}",
            path=f"{kind}s/file_{number}.{suffix}",
            data=data,
            file_name=file_name,
            mime_type=mime_type,
        )
        self.files[stored.file_id] = stored
        return stored
