"""Telegram's limits as the emulator enforces them, seen as aiogram's exceptions."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramRetryAfter,
)
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup
from aiohttp import web

from bot.emulator import Emulator
from tests.bot.conftest import Users

ANN = {"id": 1001, "first_name": "Ann", "username": "ann"}
OPS = {"id": -1001234, "type": "supergroup", "title": "ops"}
PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5f1d0340000000049454e44ae426082"
)


@pytest.fixture
async def ann_chat(users: Users) -> int:
    await users.call("message", user=ANN, text="/start")
    return int(ANN["id"])  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("<blink>hi</blink>", 'Unsupported start tag "blink" at byte offset 0'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("é <b>x</i>", 'Unmatched end tag at byte offset 7, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
    ],
)
async def test_html_the_parser_rejects(bot: Bot, ann_chat: int, html: str, reason: str) -> None:
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.send_message(ann_chat, html, parse_mode="HTML")
    assert refused.value.message == f"Bad Request: can't parse entities: {reason}"


async def test_html_entities_become_text_and_offsets_count_utf16(bot: Bot, ann_chat: int) -> None:
    sent = await bot.send_message(
        ann_chat, '🚀 <b>v1 &amp; v2</b> <a href="https://x.test">log</a>', parse_mode="HTML"
    )
    assert sent.text == "🚀 v1 & v2 log"
    assert sent.entities is not None
    bold, link = sent.entities
    assert (bold.type, bold.offset, bold.length) == ("bold", 3, 7)
    assert (link.type, link.offset, link.length, link.url) == ("text_link", 11, 3, "https://x.test")


async def test_text_length_is_counted_after_parsing(bot: Bot, ann_chat: int) -> None:
    await bot.send_message(ann_chat, "&lt;" * 4096, parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
        await bot.send_message(ann_chat, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="Bad Request: message text is empty"):
        await bot.send_message(ann_chat, "<b> </b>", parse_mode="HTML")


async def test_callback_data_over_64_bytes_is_refused(bot: Bot, ann_chat: int) -> None:
    button = InlineKeyboardButton(text="Go", callback_data="é" * 33)  # 66 bytes
    with pytest.raises(TelegramBadRequest, match="Bad Request: BUTTON_DATA_INVALID"):
        await bot.send_message(
            ann_chat, "x", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]])
        )


async def test_an_inline_button_needs_an_action(bot: Bot, ann_chat: int) -> None:
    button = InlineKeyboardButton(text="Inert")
    with pytest.raises(TelegramBadRequest, match="Text buttons are unallowed"):
        await bot.send_message(
            ann_chat, "x", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]])
        )


async def test_a_private_chat_allows_a_small_burst_then_429(bot: Bot, ann_chat: int) -> None:
    for n in range(3):
        await bot.send_message(ann_chat, f"line {n}")
    with pytest.raises(TelegramRetryAfter) as flooded:
        await bot.send_message(ann_chat, "one too many")
    assert flooded.value.retry_after >= 1
    assert "Original description: Too Many Requests: retry after " in flooded.value.message


async def test_a_group_allows_twenty_a_minute(bot: Bot, users: Users) -> None:
    await users.call("chat", **OPS)
    for n in range(20):
        await bot.send_message(OPS["id"], f"event {n}")
    with pytest.raises(TelegramRetryAfter) as flooded:
        await bot.send_message(OPS["id"], "event 21")
    assert 1 <= flooded.value.retry_after <= 60
    assert (await users.call("counters"))["too_many_requests"] == 1  # type: ignore[index]


async def test_forced_429_carries_the_chosen_retry_after(
    bot: Bot, users: Users, ann_chat: int
) -> None:
    await users.call("flood", count=1, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as flooded:
        await bot.send_message(ann_chat, "first try")
    assert flooded.value.retry_after == 7
    await bot.send_message(ann_chat, "second try")
    counters = await users.call("counters")
    assert counters == {  # type: ignore[comparison-overlap]
        "sent": 1,
        "edited": 0,
        "deleted": 0,
        "callback_answers": 0,
        "too_many_requests": 1,
        "bad_requests": 0,
    }


async def test_photo_and_document_uploads_are_stored_whole(
    bot: Bot, users: Users, ann_chat: int
) -> None:
    photo = await bot.send_photo(
        ann_chat,
        BufferedInputFile(PNG_1x1, "chart.png"),
        caption="<i>latency</i>",
        parse_mode="HTML",
    )
    assert photo.caption == "latency"
    assert photo.photo is not None
    assert (photo.photo[0].width, photo.photo[0].height) == (1, 1)
    downloaded = await bot.download(photo.photo[0].file_id)
    assert downloaded is not None and downloaded.read() == PNG_1x1

    report = b"deploy log\n" * 1000
    document = await bot.send_document(ann_chat, BufferedInputFile(report, "deploy.log"))
    assert document.document is not None
    assert document.document.file_name == "deploy.log"
    assert document.document.file_size == len(report)

    files = [m["files"] for m in (await users.transcript(ann_chat))["messages"]]  # type: ignore[attr-defined]
    assert files[-2:] == [
        [
            {
                "kind": "photo",
                "file_id": photo.photo[0].file_id,
                "size": len(PNG_1x1),
                "name": "chart.png",
            }
        ],
        [
            {
                "kind": "document",
                "file_id": document.document.file_id,
                "size": len(report),
                "name": "deploy.log",
            }
        ],
    ]


async def test_webhook_gets_updates_with_the_secret_and_blocks_polling(
    bot: Bot, users: Users
) -> None:
    received: asyncio.Queue[tuple[str | None, dict[str, object]]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        with pytest.raises(TelegramConflictError, match="can't use getUpdates method while"):
            await bot.get_updates()
        await users.call("message", user=ANN, text="/deploy v2")
        secret, update = await asyncio.wait_for(received.get(), 10)
        assert secret == "s3cret"
        assert update["message"]["text"] == "/deploy v2"  # type: ignore[index]

        await bot.delete_webhook()
        await users.call("message", user=ANN, text="/status")
        [polled] = await bot.get_updates()
        assert polled.message is not None and polled.message.text == "/status"
    finally:
        await runner.cleanup()


async def test_a_json_body_is_accepted_like_a_form(emulator: Emulator, users: Users) -> None:
    await users.call("message", user=ANN, text="/start")
    async with aiohttp.ClientSession() as session:
        url = f"{emulator.url}/bot{emulator.token}/sendMessage"
        async with session.post(url, json={"chat_id": ANN["id"], "text": "json"}) as response:
            answer = await response.json()
        async with session.post(url, json={"chat_id": ANN["id"], "text": ""}) as response:
            refusal = (response.status, await response.json())
    assert answer["ok"] and answer["result"]["text"] == "json"
    assert refusal == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"},
    )
