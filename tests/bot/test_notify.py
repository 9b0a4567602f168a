"""How a deployment's end reaches people: the Notifier with a real aiogram Bot against
the Bot API emulator, records kept in a private Redis, and what the ops chat, the log
chat and the public channel then read (texts, documents and photos downloaded back)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from aiogram import Bot
from matplotlib import image

from bot.emulator import Emulator
from bot.notify import Notifier
from bot.settings import BotSettings, SettingsError, load_settings
from deploy.deployment import Deployment, FailureReport, HostProgress
from deploy.events import DeployFinished, Metrics
from deploy.probes import Figures
from deploy.state import ColorRecord
from jobs.records import DeploymentRecord, RecordStore
from tests.bot.conftest import Users

OPS = {"id": -100500, "type": "supergroup", "title": "ops"}
LOG = {"id": -100600, "type": "supergroup", "title": "deploy log"}
CHANNEL = {"id": -100700, "type": "channel", "title": "Releases", "username": "shop_releases"}
REGISTRY_PASSWORD = "reg&pass<9f8e7d>"  # planted; markup characters on purpose
DB_PASSWORD = "hunter2-db-secret"
PG_PASSWORD = "pg-secret-7731"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def settings_for(emulator: Emulator, log: bool = True, channel: bool = True) -> BotSettings:
    return BotSettings(
        GREENLIGHT_BOT_TOKEN=emulator.token,
        GREENLIGHT_TELEGRAM_API=emulator.url,
        GREENLIGHT_OPS_CHAT=OPS["id"],
        GREENLIGHT_LOG_CHAT=LOG["id"] if log else None,
        GREENLIGHT_CHANNEL="@shop_releases" if channel else None,
    )


@pytest.fixture
async def chats(users: Users) -> AsyncIterator[Users]:
    for chat in (OPS, LOG, CHANNEL):
        await users.call("chat", **chat)
    yield users


@pytest.fixture
def registry_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GREENLIGHT_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    return REGISTRY_PASSWORD


async def said(users: Users, chat: dict[str, Any]) -> list[dict[str, Any]]:
    transcript = await users.transcript(chat["id"])
    return list(transcript["messages"])  # type: ignore[call-overload]


async def downloaded(bot: Bot, message: dict[str, Any]) -> bytes:
    """The file a message carries, fetched back the way a Telegram client would."""
    (file,) = message["files"]
    data = await bot.download(file["file_id"])
    assert data is not None
    return data.read()


def request(
    r: redis.Redis, version: str = "v1.0.1", kind: str = "deploy", approved: bool = True
) -> DeploymentRecord:
    """A production request through its real life in Redis: asked, approved, running."""
    store = RecordStore(r)
    record = DeploymentRecord(
        id=f"production-{'rollback' if kind == 'rollback' else version}-20261129_083000",
        kind=kind,  # type: ignore[arg-type]
        app="shop",
        env="production",
        version=version,
        requested_by="tg:1001",
    )
    store.create(record)
    if approved:
        store.advance(record.id, "awaiting_approval")
        store.advance(record.id, "queued", by="tg:1002")
    else:
        store.advance(record.id, "queued")
    running = store.advance(record.id, "running", phase="prepare")
    running.deployment = Deployment(
        id=record.id,
        kind=running.kind,
        app="shop",
        env="production",
        version=version,
        who="tg:1001",
        hosts={
            name: HostProgress(
                name=name,
                live_before=ColorRecord(
                    color="blue",
                    version="v1.0.0",
                    digest="sha256:" + "a" * 64,
                    image="127.0.0.1:5000/shop",
                    port=8001,
                    deployment="production-v1.0.0-20261128_120000",
                    status="running",
                ),
            )
            for name in ("h1", "h2")
        },
    )
    return running


def finished(record: DeploymentRecord, outcome: str, **fields: Any) -> DeployFinished:
    started = next(t.at for t in record.transitions if t.state == "running")
    return DeployFinished(
        deployment=record.id,
        message=fields.pop("message", f"{record.kind} of {record.version}: {outcome}"),
        outcome=outcome,
        exit_code=0 if outcome == "live" else 1,
        phases={"prepare": 0.4, "preflight": 0.9, "backup": 2.1, "stage": 31.0, "switch": 0.8},
        at=(started + timedelta(seconds=95)).timestamp(),
        **fields,
    )


def stage_failure(output: list[str], logs: list[str]) -> FailureReport:
    return FailureReport(
        phase="stage",
        message="the migrate hook failed",
        host="h2",
        step="migrate",
        command="docker compose -p shop-green run --rm migrate",
        exit_status=3,
        output=output,
        container_logs=logs,
    )


def window(errors_at: int | None = None) -> list[Metrics]:
    return [
        Metrics(
            deployment="production-v1.0.1-20261129_083000",
            interval=i,
            figures=Figures(
                requests=20,
                errors=4 if i == errors_at else 0,
                error_rate=0.2 if i == errors_at else 0.0,
                p50_ms=12.0 + i,
                p95_ms=40.0 + 3 * i,
                p99_ms=80.0,
                versions={"v1.0.1": 20},
                elapsed=2.0 * i,
            ),
        )
        for i in range(1, 11)
    ]


async def test_a_release_is_announced_in_the_channel_with_every_field(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis
) -> None:
    record = request(r)
    await Notifier(bot, settings_for(emulator)).finished(record, finished(record, "live"), [])

    (post,) = await said(chats, CHANNEL)
    assert post["text"] == (
        "🚀 shop v1.0.1 is live in production\n"
        "deployment production-v1.0.1-20261129_083000\n"
        "deployed by tg:1001, approved by tg:1002 · took 1m 35s"
    )
    assert await said(chats, OPS) == [] and await said(chats, LOG) == []


async def test_a_release_without_approval_says_none_was_needed(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis
) -> None:
    record = request(r, approved=False)
    await Notifier(bot, settings_for(emulator)).finished(record, finished(record, "live"), [])
    (post,) = await said(chats, CHANNEL)
    assert "deployed by tg:1001, no approval needed" in post["text"]


async def test_a_failure_names_phase_host_exit_status_and_tails_in_ops_and_log_chats(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis
) -> None:
    record = request(r, "v1.0.2")
    output = [f"applying migration {n:04d}" for n in range(1, 8)] + ["ERROR: column exists"]
    logs = ["shop-green-web-1 | booting", "shop-green-web-1 | waiting for the database"]
    event = finished(
        record,
        "not_switched",
        failure=stage_failure(output, logs),
        notes=["the idle colour green was torn down"],
    )
    await Notifier(bot, settings_for(emulator)).finished(record, event, [])

    (ops,) = await said(chats, OPS)
    (log,) = await said(chats, LOG)
    assert ops["text"] == log["text"]
    text = ops["text"]
    assert text.startswith("❌ shop/production: deploy of v1.0.2 failed before the switch\n")
    assert "requested by tg:1001, approved by tg:1002" in text
    assert "failed in stage on h2 (migrate)" in text
    assert "exit status 3: docker compose -p shop-green run --rm migrate" in text
    assert "the migrate hook failed" in text and "the idle colour green was torn down" in text
    assert "output (all):\n" + "\n".join(output) in text
    assert "container log (all):\n" + "\n".join(logs) in text
    assert ops["files"] == [] and await said(chats, CHANNEL) == []
    assert [e["type"] for e in ops["entities"] if e["type"] == "pre"] == ["pre", "pre"]


async def test_an_automatic_rollback_says_which_version_serves_again(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis
) -> None:
    record = request(r, "v1.0.3")
    failure = FailureReport(
        phase="monitor", message="error rate 20% over the 5% threshold", host="h1"
    )
    event = finished(record, "rolled_back", failure=failure)
    await Notifier(bot, settings_for(emulator)).finished(record, event, window(errors_at=3))

    failed, chart = await said(chats, OPS)
    assert failed["text"].startswith("❌ shop/production: deploy of v1.0.3 was rolled back\n")
    assert "failed in monitor on h1" in failed["text"]
    assert "Traffic is back on v1.0.0." in failed["text"]
    assert [f["kind"] for f in chart["files"]] == ["photo"]
    assert [m["text"] for m in await said(chats, LOG)] == [failed["text"]]
    assert await said(chats, CHANNEL) == []


async def test_long_details_arrive_as_a_document_with_a_short_message(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis
) -> None:
    record = request(r, "v1.0.2")
    output = [f"step {n}: " + "x" * 60 for n in range(1, 401)]
    logs = [f"shop-green-web-1 | request {n} failed" for n in range(1, 121)]
    event = finished(record, "not_switched", failure=stage_failure(output, logs))
    await Notifier(bot, settings_for(emulator)).finished(record, event, [])

    (ops,) = await said(chats, OPS)
    (log,) = await said(chats, LOG)
    for message in (ops, log):
        assert [(f["kind"], f["name"]) for f in message["files"]] == [
            ("document", "production-v1.0.2-20261129_083000.txt")
        ]
        caption = message["text"]
        assert len(caption) <= 1024
        assert "failed in stage on h2 (migrate)" in caption and "exit status 3" in caption
        assert caption.endswith("The whole report is attached.")
        report = (await downloaded(bot, message)).decode()
        assert all(line in report for line in output + logs)
        assert "stage failed on h2: the migrate hook failed" in report
        assert "command (exit 3): docker compose -p shop-green run --rm migrate" in report
    # The log chat got the same upload again by its file id, not a second upload.
    assert ops["files"][0]["file_id"] == log["files"][0]["file_id"]


async def test_the_stability_window_comes_back_as_a_png_chart(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis
) -> None:
    record = request(r)
    metrics = window(errors_at=6)
    await Notifier(bot, settings_for(emulator)).finished(record, finished(record, "live"), metrics)

    (photo,) = await said(chats, OPS)
    assert [f["kind"] for f in photo["files"]] == ["photo"]
    assert photo["text"] == (
        "📈 Stability window of production-v1.0.1-20261129_083000: 10 intervals, "
        "200 probes, 4 errors, worst p95 70 ms"
    )
    png = await downloaded(bot, photo)
    assert png.startswith(PNG_SIGNATURE)
    pixels = image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (400, 800)
    # The errors are marked in red: some pixels are pure-ish red.
    red = (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)
    assert red.sum() > 20
    assert len(await said(chats, CHANNEL)) == 1


async def test_without_log_chat_or_channel_nothing_is_sent_there(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis
) -> None:
    notifier = Notifier(bot, settings_for(emulator, log=False, channel=False))
    good = request(r, "v1.0.1")
    await notifier.finished(good, finished(good, "live"), [])
    bad = request(r, "v1.0.2")
    failure = stage_failure(["boom"], [])
    await notifier.finished(bad, finished(bad, "not_switched", failure=failure), [])

    assert await said(chats, CHANNEL) == [] and await said(chats, LOG) == []
    (ops,) = await said(chats, OPS)
    assert "deploy of v1.0.2 failed before the switch" in ops["text"]


async def test_a_rollback_someone_asked_for_says_where_production_went_back_to_both_chats(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis
) -> None:
    record = request(r, "?", kind="rollback")
    assert record.deployment is not None
    record.deployment.version = "v1.0.0"  # the engine chose the last good release
    await Notifier(bot, settings_for(emulator)).finished(record, finished(record, "live"), [])

    (ops,) = await said(chats, OPS)
    assert ops["text"] == (
        "↩️ shop/production went back to v1.0.0\n"
        "rollback production-rollback-20261129_083000 · requested by tg:1001, approved by tg:1002 "
        "· took 1m 35s"
    )
    assert [m["text"] for m in await said(chats, LOG)] == [ops["text"]]
    assert await said(chats, CHANNEL) == []


async def test_no_secret_leaves_in_any_text_or_document(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis, registry_password: str
) -> None:
    planted = [
        f"curl -s https://api.telegram.org/bot{emulator.token}/getMe",
        f"docker login -u ci -p {registry_password} 127.0.0.1:5000",
        f"DB_PASSWORD={DB_PASSWORD}",
        f"connecting to postgres://shop:{PG_PASSWORD}@db:5432/shop",
        f"Authorization: Bearer {DB_PASSWORD}",
    ]
    notifier = Notifier(bot, settings_for(emulator))
    for n, lines in enumerate((planted, planted * 40)):  # inline, then as a document
        record = request(r, f"v1.0.{n + 2}")
        failure = stage_failure(lines, [*lines, "ready"])
        failure.message = f"migrate could not log in with {registry_password}"
        event = finished(record, "rolled_back", failure=failure, notes=[planted[1]])
        await notifier.finished(record, event, window())

    secrets = [emulator.token, registry_password, DB_PASSWORD, PG_PASSWORD]
    secrets += [emulator.token.partition(":")[2], "reg&amp;pass"]
    seen: list[str] = []
    for chat in (OPS, LOG, CHANNEL):
        for message in await said(chats, chat):
            seen += [message["text"] or "", *message["history"]]
            if any(f["kind"] == "document" for f in message["files"]):
                seen.append((await downloaded(bot, message)).decode())
    assert len(seen) == 4 + 2 + 2  # ops: 2 failures, 2 charts; log: 2 failures; 2 documents
    assert any("DB_PASSWORD=***" in text for text in seen)
    assert any("postgres://shop:***@db:5432/shop" in text for text in seen)
    for text in seen:
        for secret in secrets:
            assert secret not in text


async def test_429s_are_waited_out_and_refusals_never_raise(
    emulator: Emulator, bot: Bot, chats: Users, r: redis.Redis
) -> None:
    await chats.call("flood", count=2, retry_after=1)
    record = request(r)
    await Notifier(bot, settings_for(emulator)).finished(record, finished(record, "live"), [])
    assert len(await said(chats, CHANNEL)) == 1
    assert (await chats.call("counters"))["too_many_requests"] == 2  # type: ignore[index]

    # A channel Telegram does not know: the announcement is lost, the chart still goes.
    settings = settings_for(emulator).model_copy(update={"channel": "@nobody_here"})
    other = request(r, "v1.0.4")
    await Notifier(bot, settings).finished(other, finished(other, "live"), window())
    assert [len(m["files"]) for m in await said(chats, OPS)] == [1]


@pytest.mark.parametrize(
    ("variable", "value", "error"),
    [
        ("GREENLIGHT_LOG_CHAT", "ops", "GREENLIGHT_LOG_CHAT: Value error, a numeric chat id"),
        ("GREENLIGHT_CHANNEL", "releases", "GREENLIGHT_CHANNEL: Value error, a numeric chat id"),
        ("GREENLIGHT_CHANNEL", "@abc", "GREENLIGHT_CHANNEL: Value error, a numeric chat id or"),
        ("GREENLIGHT_CHANNEL", "@bad-name", "GREENLIGHT_CHANNEL: Value error, a numeric"),
    ],
)
def test_a_bad_log_chat_or_channel_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, variable: str, value: str, error: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("GREENLIGHT_BOT_TOKEN", "123456:do-not-print-me")
    monkeypatch.setenv("GREENLIGHT_OPS_CHAT", "-100500")
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(error)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("log_chat", "channel", "read"),
    [
        ("-100600", "@shop_releases", (-100600, "@shop_releases")),
        ("", "-1001234567890", (None, -1001234567890)),
        (None, None, (None, None)),
    ],
)
def test_log_chat_and_channel_are_optional_ids_or_a_username(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    log_chat: str | None,
    channel: str | None,
    read: tuple[object, object],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GREENLIGHT_BOT_TOKEN", "123456:do-not-print-me")
    monkeypatch.setenv("GREENLIGHT_OPS_CHAT", "-100500")
    for variable, value in (("GREENLIGHT_LOG_CHAT", log_chat), ("GREENLIGHT_CHANNEL", channel)):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    settings = load_settings()
    assert (settings.log_chat, settings.channel) == read
