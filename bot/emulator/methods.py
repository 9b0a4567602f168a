"""The Bot API methods the emulator answers, each refusing what Telegram refuses."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from bot.emulator.core import Telegram
from bot.emulator.errors import ENTITY_TOO_LARGE, bad_request
from bot.emulator.markup import checked_markup
from bot.emulator.params import Params, Upload
from bot.emulator.state import Revision, StoredFile, StoredMessage
from bot.emulator.text import CAPTION_LIMIT, checked_text

JsonObject = dict[str, object]
Method = Callable[[Telegram, Params], Awaitable[object]]

PHOTO_UPLOAD_LIMIT = 10 * 1024 * 1024
DOCUMENT_UPLOAD_LIMIT = 50 * 1024 * 1024
CALLBACK_ANSWER_LIMIT = 200
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


async def get_me(telegram: Telegram, params: Params) -> object:
    return {
        **telegram.identity.as_user(),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


async def get_updates(telegram: Telegram, params: Params) -> object:
    limit = min(max(params.integer("limit", 100) or 100, 1), 100)
    timeout = max(params.integer("timeout", 0) or 0, 0)
    return await telegram.updates.get(params.integer("offset"), limit, timeout)


async def set_webhook(telegram: Telegram, params: Params) -> object:
    url = params.string("url") or ""
    if not url:
        await telegram.updates.delete_webhook()
        return True
    parts = urlsplit(url)
    # Telegram demands HTTPS; the emulator also lets a bot on loopback take plain HTTP.
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = params.string("secret_token")
    if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")
    if params.boolean("drop_pending_updates"):
        telegram.updates.drop_pending()
    telegram.updates.set_webhook(url, secret)
    return True


async def delete_webhook(telegram: Telegram, params: Params) -> object:
    await telegram.updates.delete_webhook()
    if params.boolean("drop_pending_updates"):
        telegram.updates.drop_pending()
    return True


async def get_webhook_info(telegram: Telegram, params: Params) -> object:
    return {
        "url": telegram.updates.webhook_url or "",
        "has_custom_certificate": False,
        "pending_update_count": len(telegram.updates.pending),
    }


def _bot_sender(telegram: Telegram, chat_type: str) -> JsonObject | None:
    # A channel post carries sender_chat instead of a sender.
    return None if chat_type == "channel" else telegram.identity.as_user()


async def send_message(telegram: Telegram, params: Params) -> object:
    chat = telegram.world.chat(params.require_chat_id())
    text, entities = checked_text(params.string("text"), params.string("parse_mode"))
    entities = _explicit_entities(params, "entities") or entities
    markup = checked_markup(params.json("reply_markup"))
    telegram.paced(chat)
    message = chat.add_message(
        _bot_sender(telegram, chat.type), Revision(text, entities, markup), from_bot=True
    )
    telegram.world.counters.sent += 1
    return message.as_message()


def _explicit_entities(params: Params, name: str) -> list[JsonObject]:
    entities = params.json(name)
    if entities is None:
        return []
    if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
        raise bad_request(f"can't parse {name} JSON object")
    return entities


def _message_to_edit(telegram: Telegram, params: Params) -> StoredMessage:
    if params.string("inline_message_id") is not None:
        raise bad_request("inline messages are not emulated")
    chat = telegram.world.chat(params.require_chat_id())
    message = chat.messages.get(params.require_message_id())
    if message is None or message.deleted:
        raise bad_request("message to edit not found")
    if not message.from_bot:
        raise bad_request("message can't be edited")
    return message


def _apply_edit(telegram: Telegram, message: StoredMessage, new: Revision) -> object:
    if new == message.content:
        raise bad_request(NOT_MODIFIED)
    telegram.paced(message.chat)
    message.history.append(message.content)
    message.content = new
    message.edit_date = max(message.date, _now())
    telegram.world.counters.edited += 1
    return message.as_message()


def _now() -> int:
    return int(time.time())


async def edit_message_text(telegram: Telegram, params: Params) -> object:
    message = _message_to_edit(telegram, params)
    if message.caption_mode:
        raise bad_request("there is no text in the message to edit")
    text, entities = checked_text(params.string("text"), params.string("parse_mode"))
    entities = _explicit_entities(params, "entities") or entities
    # Like Telegram, an edit without reply_markup removes the inline keyboard.
    markup = checked_markup(params.json("reply_markup"))
    return _apply_edit(telegram, message, Revision(text, entities, markup))


async def edit_message_reply_markup(telegram: Telegram, params: Params) -> object:
    message = _message_to_edit(telegram, params)
    markup = checked_markup(params.json("reply_markup"))
    current = message.content
    return _apply_edit(telegram, message, Revision(current.text, current.entities, markup))


async def delete_message(telegram: Telegram, params: Params) -> object:
    chat = telegram.world.chat(params.require_chat_id())
    message = chat.messages.get(params.require_message_id())
    if message is None or message.deleted:
        raise bad_request("message to delete not found")
    message.deleted = True
    telegram.world.counters.deleted += 1
    return True


async def answer_callback_query(telegram: Telegram, params: Params) -> object:
    query = telegram.world.callback_queries.get(params.string("callback_query_id") or "")
    if query is None or query.answered:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = params.string("text") or ""
    if len(text) > CALLBACK_ANSWER_LIMIT:
        raise bad_request("MESSAGE_TOO_LONG")
    query.answered = True
    query.answer = {"text": text, "show_alert": params.boolean("show_alert")}
    telegram.world.counters.callback_answers += 1
    return True


def _stored_upload(
    telegram: Telegram, params: Params, field: str, kind: str, limit: int
) -> StoredFile:
    upload = params.upload(field)
    if upload is None:
        raise bad_request(f"there is no {field} in the request")
    if isinstance(upload, str):
        stored = telegram.world.files.get(upload)
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        return stored
    assert isinstance(upload, Upload)
    if not upload.data:
        raise bad_request("file must be non-empty")
    if len(upload.data) > limit:
        raise ENTITY_TOO_LARGE
    return telegram.world.store_file(kind, upload.data, upload.file_name, upload.mime_type)


async def _send_file(telegram: Telegram, params: Params, field: str, limit: int) -> object:
    chat = telegram.world.chat(params.require_chat_id())
    caption, entities = checked_text(
        params.string("caption"), params.string("parse_mode"), CAPTION_LIMIT, caption=True
    )
    entities = _explicit_entities(params, "caption_entities") or entities
    markup = checked_markup(params.json("reply_markup"))
    stored = _stored_upload(telegram, params, field, field, limit)
    telegram.paced(chat)
    message = chat.add_message(
        _bot_sender(telegram, chat.type), Revision(caption, entities, markup), from_bot=True
    )
    message.caption_mode = True
    if field == "photo":
        message.photo = stored
    else:
        message.document = stored
    telegram.world.counters.sent += 1
    return message.as_message()


async def send_photo(telegram: Telegram, params: Params) -> object:
    return await _send_file(telegram, params, "photo", PHOTO_UPLOAD_LIMIT)


async def send_document(telegram: Telegram, params: Params) -> object:
    return await _send_file(telegram, params, "document", DOCUMENT_UPLOAD_LIMIT)


async def get_file(telegram: Telegram, params: Params) -> object:
    stored = telegram.world.files.get(params.string("file_id") or "")
    if stored is None:
        raise bad_request("invalid file_id")
    return stored.as_file()


def _commands_key(params: Params) -> str:
    scope = params.json("scope") or {"type": "default"}
    return f"{scope}|{params.string('language_code') or ''}"


async def set_my_commands(telegram: Telegram, params: Params) -> object:
    commands = params.json("commands")
    if not isinstance(commands, list) or len(commands) > 100:
        raise bad_request("commands must be an array of at most 100 BotCommand")
    for command in commands:
        if not isinstance(command, dict) or not _COMMAND_NAME.fullmatch(
            str(command.get("command", ""))
        ):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(str(command.get("description", ""))) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
    telegram.world.commands[_commands_key(params)] = [
        {"command": c["command"], "description": c["description"]} for c in commands
    ]
    return True


async def get_my_commands(telegram: Telegram, params: Params) -> object:
    return telegram.world.commands.get(_commands_key(params), [])


async def delete_my_commands(telegram: Telegram, params: Params) -> object:
    telegram.world.commands.pop(_commands_key(params), None)
    return True


METHODS: dict[str, Method] = {
    "getme": get_me,
    "getupdates": get_updates,
    "setwebhook": set_webhook,
    "deletewebhook": delete_webhook,
    "getwebhookinfo": get_webhook_info,
    "sendmessage": send_message,
    "editmessagetext": edit_message_text,
    "editmessagereplymarkup": edit_message_reply_markup,
    "deletemessage": delete_message,
    "answercallbackquery": answer_callback_query,
    "sendphoto": send_photo,
    "senddocument": send_document,
    "getfile": get_file,
    "setmycommands": set_my_commands,
    "getmycommands": get_my_commands,
    "deletemycommands": delete_my_commands,
}
