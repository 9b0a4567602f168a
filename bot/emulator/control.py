"""Control endpoints: play the users (write, press buttons) and read what the bot did."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Awaitable, Callable

from bot.emulator.core import Telegram
from bot.emulator.errors import bad_request
from bot.emulator.markup import callback_data_of
from bot.emulator.state import CallbackQuery, Chat, Revision
from bot.emulator.text import command_entities

JsonObject = dict[str, object]
Control = Callable[[Telegram, JsonObject], Awaitable[object]]


def _user(body: JsonObject) -> JsonObject:
    user = body.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), int):
        raise bad_request('"user" must be an object with a numeric "id"')
    return {
        "id": user["id"],
        "is_bot": False,
        "first_name": str(user.get("first_name", f"User{user['id']}")),
        **({"username": user["username"]} if isinstance(user.get("username"), str) else {}),
    }


def _chat(telegram: Telegram, body: JsonObject, user: JsonObject | None) -> Chat:
    chat = body.get("chat")
    if isinstance(chat, dict):
        return telegram.ensure_chat(chat)
    if "chat_id" in body:
        return telegram.world.chat(body["chat_id"])
    if user is None:
        raise bad_request('"chat" or "chat_id" is required')
    # Without a chat, the user writes to the bot privately.
    return telegram.ensure_chat(
        {"id": user["id"], "type": "private", "first_name": user["first_name"]}
    )


async def create_chat(telegram: Telegram, body: JsonObject) -> object:
    """Make a chat exist (a group the bot was added to, a channel it posts in)."""
    return telegram.ensure_chat(body).as_chat()


async def send_user_message(telegram: Telegram, body: JsonObject) -> object:
    """A user writes `text`; the bot receives it as an update with command entities."""
    text = body.get("text")
    if not isinstance(text, str) or not text:
        raise bad_request('"text" must be a non-empty string')
    user = _user(body) if "user" in body else None
    chat = _chat(telegram, body, user)
    content = Revision(text, command_entities(text), None)
    if chat.type == "channel":
        post = chat.add_message(None, content, from_bot=False)
        return telegram.updates.push({"channel_post": post.as_message()})
    if user is None:
        raise bad_request('"user" is required outside channels')
    message = chat.add_message(user, content, from_bot=False)
    return telegram.updates.push({"message": message.as_message()})


async def press_button(telegram: Telegram, body: JsonObject) -> object:
    """A user presses an inline button: only one the message carries, unless forged."""
    user = _user(body)
    chat = telegram.world.chat(body.get("chat_id"))
    message = chat.messages.get(int(str(body.get("message_id", 0))))
    if message is None or message.deleted:
        raise bad_request("message not found")
    data = body.get("data")
    if not isinstance(data, str):
        raise bad_request('"data" must be a string')
    if not body.get("forge") and data not in callback_data_of(message.content.reply_markup):
        raise bad_request("the message has no button with this callback_data")
    query_id = str(secrets.randbits(63))
    telegram.world.callback_queries[query_id] = CallbackQuery(
        query_id, chat.id, message.message_id, data
    )
    return telegram.updates.push(
        {
            "callback_query": {
                "id": query_id,
                "from": user,
                "message": message.as_message(),
                "chat_instance": str(chat.id),
                "data": data,
            }
        }
    )


def _buttons(revision: Revision) -> list[list[JsonObject]]:
    markup = revision.reply_markup or {}
    rows = markup.get("inline_keyboard", [])
    return rows if isinstance(rows, list) else []


async def transcript(telegram: Telegram, body: JsonObject) -> object:
    """Every message of a chat as it reads now: final text, buttons, edits, files."""
    chat = telegram.world.chat(body.get("chat_id"))
    answers = {
        q.message_id: q.answer
        for q in telegram.world.callback_queries.values()
        if q.chat_id == chat.id and q.answer is not None
    }
    return {
        "chat": chat.as_chat(),
        "messages": [
            {
                "message_id": m.message_id,
                "from_bot": m.from_bot,
                "from": m.sender,
                "text": m.content.text,
                "entities": m.content.entities,
                "buttons": _buttons(m.content),
                "edits": len(m.history),
                "history": [r.text for r in m.history],
                # When it was sent, and when edited to each later revision (Unix time).
                "times": [r.at for r in (*m.history, m.content)],
                "deleted": m.deleted,
                "files": [
                    {"kind": kind, "file_id": f.file_id, "size": len(f.data), "name": f.file_name}
                    for kind, f in (("photo", m.photo), ("document", m.document))
                    if f is not None
                ],
                "callback_answer": answers.get(m.message_id),
            }
            for m in chat.messages.values()
        ],
    }


async def counters(telegram: Telegram, body: JsonObject) -> object:
    return dataclasses.asdict(telegram.world.counters)


async def flood(telegram: Telegram, body: JsonObject) -> object:
    """Force 429s on the next `count` sends or edits; `pacing` switches the limits."""
    telegram.pacer.force(int(str(body.get("count", 1))), int(str(body.get("retry_after", 1))))
    if "pacing" in body:
        telegram.pacer.enabled = bool(body["pacing"])
    return {"forced": telegram.pacer.forced_count, "pacing": telegram.pacer.enabled}


async def reset(telegram: Telegram, body: JsonObject) -> object:
    await telegram.reset()
    return True


CONTROLS: dict[str, Control] = {
    "chat": create_chat,
    "message": send_user_message,
    "press": press_button,
    "transcript": transcript,
    "counters": counters,
    "flood": flood,
    "reset": reset,
}
