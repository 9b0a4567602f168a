"""The rehearsal through the chat (`make demo`), as a test: `greenlight bot` and a
worker as their own processes, the Bot API emulator as Telegram, one host of the bed
under traffic. Dana deploys v1.0.1 and Bob approves; v1.0.3 is rolled back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.emulator import DEFAULT_TOKEN
from testbed import rehearsal
from tests.e2e.conftest import Bed, assert_served


async def test_the_chat_rehearsal_deploys_rolls_back_and_tells_everyone(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = bed.spec(("h1",), name="rehearsal")
    assert bed.greenlight("deploy", "v1.0.0", "--quiet", config=spec).code == 0
    monkeypatch.setenv("GREENLIGHT_CONFIG", str(spec))
    with bed.load("h1") as load:
        done = await rehearsal.rehearse(narrate=False)
        served = load.stop()
    assert_served(served, broken="v1.0.3")
    assert done.wrong() == []
    ops = [m for m in done.chats["ops chat"] if m["from_bot"]]
    # Each approval card became its deployment's progress message, ending as it ended.
    live, back = (
        next(m for m in ops if m["text"].startswith(f"🚀 deploy of {version}"))
        for version in ("v1.0.1", "v1.0.3")
    )
    assert "approved by @bob" in live["text"] and live["text"].endswith("✅ is live")
    assert [b["text"] for row in live["buttons"] for b in row] == ["↩️ Roll back"]
    assert back["text"].endswith("↩️ was rolled back") and back["buttons"] == []
    assert "❌ monitor" in back["text"]
    # The failure, in the ops chat and the log chat; the charts; the announcement.
    failure = "❌ sample/production: deploy of v1.0.3 was rolled back"
    assert any(m["text"].startswith(failure) for m in ops)
    assert [m["text"].splitlines()[0] for m in done.chats["log chat"]] == [failure]
    assert "Traffic is back on v1.0.1." in done.chats["log chat"][0]["text"]
    assert sorted(p.name for p in done.files) == sorted(
        f"{live_id}.png" for live_id in (_id(live), _id(back))
    )
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in done.files)
    [announced] = done.chats["channel"]
    assert announced["text"].startswith("🚀 sample v1.0.1 is live in production")
    assert "deployed by @dana, approved by @bob" in announced["text"]
    status = ops[-1]
    assert status["text"].startswith("📊 sample/production")
    assert "🟢 h1: v1.0.1 live" in status["text"]
    everything = json.dumps(done.chats, ensure_ascii=False)
    logs = "".join(Path(done.out, f"{role}.log").read_text() for role in ("bot", "worker"))
    assert DEFAULT_TOKEN not in everything and DEFAULT_TOKEN not in logs


def _id(progress: dict[str, object]) -> str:
    """The deployment id on a progress message's second line."""
    return str(progress["text"]).splitlines()[1].rsplit(" · ", 1)[-1]
