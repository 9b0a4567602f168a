"""The bot killed mid-deployment and started again (real processes, the worker on the
bed, the emulator as Telegram): the same progress message carries on to the true end,
and nothing is lost or said twice."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import pytest
import redis

from bot.emulator import running_emulator
from jobs.records import RecordStore
from testbed import paths, rehearsal
from testbed.rehearsal import BOB, DANA, OPS, Chat, until
from tests.e2e.conftest import Bed

REDIS_URL = f"redis://127.0.0.1:{paths.REDIS_PORT}/9"  # this test's own database


async def test_a_bot_killed_mid_deployment_carries_on_with_the_same_message(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = bed.spec(("h1",), name="restart")
    assert bed.greenlight("deploy", "v1.0.0", "--quiet", config=spec).code == 0
    monkeypatch.setenv("GREENLIGHT_CONFIG", str(spec))
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    records = RecordStore(connection)
    async with running_emulator() as emulator, aiohttp.ClientSession() as session:
        chat = Chat(emulator, session)
        for room in rehearsal.ROOMS.values():
            await chat.control("chat", **room)
        with rehearsal.processes(emulator, tmp_path, REDIS_URL) as running:
            card = await chat.say(DANA, "/deploy v1.0.1")
            await chat.press(BOB, card, "Approve")
            deployment = records.recent(rehearsal.APP, rehearsal.ENV, 1)[0].id

            async def staged() -> bool:
                record = records.load(deployment)
                engine = record.deployment if record else None
                return engine is not None and "stage" in engine.completed

            await until(staged, "the new colour to be staged", 120)
            running.stop("bot", signal.SIGKILL)
            running.start("bot")

            async def ended() -> bool:
                record = records.load(deployment)
                return record is not None and record.final

            await until(ended, "the deployment to end", 180)

            async def shown() -> dict[str, object] | None:
                ops = await chat.messages(OPS)
                now = next(m for m in ops if m["message_id"] == card["message_id"])
                return now if now["text"].endswith("✅ is live") else None

            progress = await until(shown, "the progress message to say it is live", 60)
            await chat.quiet()
            ops = [m for m in await chat.messages(OPS) if m["from_bot"]]
            channel = await chat.messages(rehearsal.CHANNEL)
    record = records.load(deployment)
    assert record is not None and record.state == "live"
    # One progress message (the card), every phase done, one chart, one announcement.
    assert [m["message_id"] for m in ops if "deploy of v1.0.1" in m["text"]] == [card["message_id"]]
    for phase in ("stage", "verify", "smoke", "switch", "monitor", "finalize"):
        assert f"✅ {phase}" in str(progress["text"]), phase
    assert [f["kind"] for m in ops for f in m["files"]] == ["photo"]
    assert len(channel) == 1 and "v1.0.1 is live in production" in channel[0]["text"]
