"""The emulator as the bot sees it through aiogram: updates, messages, edits, buttons."""

from __future__ import annotations

import asyncio

import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup

from bot.emulator import Emulator
from tests.bot.conftest import Users, client_for

ANN = {"id": 1001, "first_name": "Ann", "username": "ann"}
OPS = {"id": -1001234, "type": "supergroup", "title": "ops"}


def keyboard(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d) for t, d in buttons]]
    )


async def test_get_me_names_the_bot(bot: Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot
    assert me.username == "greenlight_bot"
    assert me.id == 123456


async def test_a_wrong_token_is_unauthorized(emulator: Emulator) -> None:
    stranger = client_for(emulator, token="999:not-the-token")
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    finally:
        await stranger.session.close()


async def test_long_poll_returns_an_injected_deploy_command(bot: Bot, users: Users) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await asyncio.sleep(0)  # let the poll reach the server before the user writes
    await users.call("message", user=ANN, chat=OPS, text="/deploy@greenlight_bot v1.0.1")
    updates = await asyncio.wait_for(poll, 10)

    assert len(updates) == 1
    message = updates[0].message
    assert message is not None
    assert message.text == "/deploy@greenlight_bot v1.0.1"
    assert message.chat.id == OPS["id"] and message.chat.type == "supergroup"
    assert message.from_user is not None and message.from_user.username == "ann"
    assert message.entities is not None
    command = message.entities[0]
    assert (command.type, command.offset, command.length) == ("bot_command", 0, 22)


async def test_offset_confirms_earlier_updates(bot: Bot, users: Users) -> None:
    await users.call("message", user=ANN, text="/status")
    await users.call("message", user=ANN, text="/history")
    first = await bot.get_updates()
    assert [u.message.text for u in first if u.message] == ["/status", "/history"]

    rest = await bot.get_updates(offset=first[0].update_id + 1)
    assert [u.message.text for u in rest if u.message] == ["/history"]
    assert await bot.get_updates(offset=first[1].update_id + 1) == []


async def test_a_newer_poll_ends_the_older_with_a_conflict(bot: Bot, users: Users) -> None:
    older = asyncio.create_task(bot.get_updates(timeout=30))
    await asyncio.sleep(0.05)
    newer = asyncio.create_task(bot.get_updates(timeout=30))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(older, 10)
    await users.call("message", user=ANN, text="/status")
    [update] = await asyncio.wait_for(newer, 10)
    assert update.message is not None and update.message.text == "/status"


async def test_approve_flow_ends_with_the_final_text_and_no_buttons(bot: Bot, users: Users) -> None:
    await users.call("chat", **OPS)
    sent = await bot.send_message(
        OPS["id"],
        "Deploy <b>v1.0.1</b> to production?",
        parse_mode="HTML",
        reply_markup=keyboard(("Approve", "approve:42"), ("Reject", "reject:42")),
    )
    assert sent.text == "Deploy v1.0.1 to production?"
    assert sent.entities is not None and sent.entities[0].type == "bold"

    await users.call(
        "press", user=ANN, chat_id=OPS["id"], message_id=sent.message_id, data="approve:42"
    )
    [update] = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.data == "approve:42"
    assert query.message is not None and query.message.message_id == sent.message_id

    assert await bot.answer_callback_query(query.id, text="Approved")
    await bot.edit_message_text("Approved by Ann", chat_id=OPS["id"], message_id=sent.message_id)

    transcript = await users.transcript(OPS["id"])
    [message] = transcript["messages"]  # type: ignore[misc]
    assert message["text"] == "Approved by Ann"
    assert message["buttons"] == []
    assert message["edits"] == 1
    assert message["callback_answer"] == {"text": "Approved", "show_alert": False}


async def test_only_buttons_on_the_message_can_be_pressed_unless_forged(
    bot: Bot, users: Users
) -> None:
    await users.call("message", user=ANN, text="hi")
    reply = await bot.send_message(ANN["id"], "Roll back?", reply_markup=keyboard(("Yes", "rb:1")))
    refusal = await users.refused(
        "press", user=ANN, chat_id=ANN["id"], message_id=reply.message_id, data="rb:999"
    )
    assert "no button" in refusal

    await users.call(
        "press",
        user=ANN,
        chat_id=ANN["id"],
        message_id=reply.message_id,
        data="rb:999",
        forge=True,
    )
    updates = await bot.get_updates()
    assert updates[-1].callback_query is not None
    assert updates[-1].callback_query.data == "rb:999"


async def test_editing_with_the_same_content_is_not_modified(bot: Bot, users: Users) -> None:
    await users.call("message", user=ANN, text="/status")
    markup = keyboard(("Abort", "abort:7"))
    sent = await bot.send_message(ANN["id"], "Deploying…", reply_markup=markup)
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.edit_message_text(
            "Deploying…", chat_id=ANN["id"], message_id=sent.message_id, reply_markup=markup
        )
    assert refused.value.message == (
        "Bad Request: message is not modified: specified new message content and reply markup"
        " are exactly the same as a current content and reply markup of the message"
    )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=ANN["id"], message_id=sent.message_id, reply_markup=markup
        )


async def test_editing_a_missing_or_deleted_message_is_refused(bot: Bot, users: Users) -> None:
    await users.call("message", user=ANN, text="/status")
    with pytest.raises(TelegramBadRequest, match="Bad Request: message to edit not found"):
        await bot.edit_message_text("x", chat_id=ANN["id"], message_id=999)

    sent = await bot.send_message(ANN["id"], "soon gone")
    assert await bot.delete_message(ANN["id"], sent.message_id)
    with pytest.raises(TelegramBadRequest, match="Bad Request: message to edit not found"):
        await bot.edit_message_text("x", chat_id=ANN["id"], message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="Bad Request: message to delete not found"):
        await bot.delete_message(ANN["id"], sent.message_id)


async def test_an_unknown_chat_is_not_found(bot: Bot) -> None:
    with pytest.raises(
        TelegramBadRequest, match=r"^Telegram server says - Bad Request: chat not found$"
    ):
        await bot.send_message(-100777, "hello?")


async def test_callback_answers_need_a_live_query(bot: Bot, users: Users) -> None:
    expected = "Bad Request: query is too old and response timeout expired or query ID is invalid"
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.answer_callback_query("12345")
    assert refused.value.message == expected

    await users.call("message", user=ANN, text="hi")
    sent = await bot.send_message(ANN["id"], "ok?", reply_markup=keyboard(("OK", "ok")))
    await users.call("press", user=ANN, chat_id=ANN["id"], message_id=sent.message_id, data="ok")
    query = (await bot.get_updates())[-1].callback_query
    assert query is not None
    await bot.answer_callback_query(query.id)
    with pytest.raises(TelegramBadRequest) as twice:
        await bot.answer_callback_query(query.id)
    assert twice.value.message == expected


async def test_commands_round_trip(bot: Bot) -> None:
    commands = [BotCommand(command="deploy", description="Deploy a version")]
    assert await bot.set_my_commands(commands)
    assert [(c.command, c.description) for c in await bot.get_my_commands()] == [
        ("deploy", "Deploy a version")
    ]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Deploy Now", description="x")])


async def test_a_channel_post_by_username_and_a_users_channel_post(bot: Bot, users: Users) -> None:
    await users.call("chat", id=-1009, type="channel", title="Releases", username="releases")
    posted = await bot.send_message("@releases", "v1.0.1 is live")
    assert posted.chat.id == -1009
    assert posted.sender_chat is not None and posted.sender_chat.id == -1009
    assert posted.from_user is None

    await users.call("message", chat_id=-1009, text="/status")
    [update] = await bot.get_updates()
    assert update.channel_post is not None and update.channel_post.text == "/status"


async def test_the_transcript_keeps_edit_history_and_reset_forgets_it(
    bot: Bot, users: Users
) -> None:
    await users.call("message", user=ANN, text="/deploy v1")
    progress = await bot.send_message(ANN["id"], "backup…")
    await bot.edit_message_text("stage…", chat_id=ANN["id"], message_id=progress.message_id)
    await bot.edit_message_text("done ✅", chat_id=ANN["id"], message_id=progress.message_id)

    texts = [
        (m["text"], m["edits"], m["history"])
        for m in (await users.transcript(ANN["id"]))["messages"]
    ]  # type: ignore[attr-defined]
    assert texts == [("/deploy v1", 0, []), ("done ✅", 2, ["backup…", "stage…"])]
    assert (await users.call("counters"))["edited"] == 2  # type: ignore[index]

    await users.call("reset")
    assert "chat not found" in await users.refused("transcript", chat_id=ANN["id"])
    assert await bot.get_updates() == []
