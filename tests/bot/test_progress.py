"""The progress message as the ops chat sees it: the real bot (polling, the progress
consumer) against the emulator and a private Redis. The workers' part is played by
appending their typed events and moving the request's record, as a phase job does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from aiogram import Bot, Dispatcher

from bot.app import build_bot, build_dispatcher
from bot.emulator import Emulator
from bot.progress import GROUP, Progress
from bot.settings import BotSettings
from bot.steering import Action, Steer
from deploy.deployment import FailureReport
from deploy.events import (
    DeployFinished,
    DeployStarted,
    Metrics,
    Output,
    PhaseFailure,
    PhaseFinished,
    PhaseStarted,
    RollbackFinished,
    RollbackStarted,
)
from deploy.probes import Figures
from jobs import api
from jobs.lease import Lease
from jobs.records import DeploymentRecord, RecordStore
from jobs.streams import EVENTS_KEY, append_event, read_audit
from jobs.work import CANCEL_KEY, expire, lease_holder
from tests.bot.chat import Message, People, until
from tests.bot.conftest import Users
from tests.bot.running import settings_for
from tests.bot.test_bot import ADA, BOB, DANA, EVE, OPS, SPECS, button, trail

PHASES = ["prepare", "preflight", "backup", "stage", "verify", "test", "smoke"]
AFTER_GATE = ["switch", "monitor", "finalize"]


@dataclass
class Told:
    """The outcome hook's calls: (deployment, record state, outcome, intervals)."""

    calls: list[tuple[str, str, str, int]] = field(default_factory=list)

    async def finished(
        self, record: DeploymentRecord, event: DeployFinished, metrics: list[Metrics]
    ) -> None:
        self.calls.append((record.id, record.state, event.outcome, len(metrics)))


@dataclass
class Ops:
    people: People
    users: Users
    r: redis.Redis
    settings: BotSettings
    told: Told
    progress: Progress
    clients: list[Bot]

    async def restart_consumer(self) -> None:
        """The progress consumer stops and a new one (new client, new process state)
        takes over under the same consumer name."""
        await self.progress.stop()
        client = build_bot(self.settings)
        self.clients.append(client)
        self.progress = Progress(client, self.r, OPS["id"], self.told)
        await self.progress.start()

    async def counters(self) -> dict[str, int]:
        return await self.users.call("counters")  # type: ignore[return-value]

    async def bot_messages(self) -> list[Message]:
        return await self.people.bot_messages(OPS["id"])

    async def message(self, message_id: int) -> Message:
        return next(m for m in await self.bot_messages() if m["message_id"] == message_id)

    async def reads(self, message_id: int, *words: str) -> Message:
        """The message once its text holds every one of `words`."""

        async def check() -> Message | None:
            found = await self.message(message_id)
            return found if all(w in found["text"] for w in words) else None

        return await until(check, f"message {message_id} to read {words}")  # type: ignore[no-any-return]

    async def progress_message(self, deployment: str) -> Message:
        """The (one) message naming `deployment` that is not a command reply."""

        async def check() -> Message | None:
            found = [
                m
                for m in await self.bot_messages()
                if deployment in m["text"] and m["text"].startswith("🚀")
            ]
            assert len(found) <= 1, found
            return found[0] if found else None

        return await until(check, f"the progress message of {deployment}")  # type: ignore[no-any-return]


@pytest.fixture
async def ops(
    emulator: Emulator, users: Users, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Ops]:
    caplog.set_level(logging.INFO)
    settings = settings_for(emulator)
    await users.call("chat", **OPS)
    client = build_bot(settings)
    told = Told()
    progress = Progress(client, r, OPS["id"], told)
    dispatcher = build_dispatcher(settings, r, SPECS, progress)
    polling = asyncio.create_task(
        dispatcher.start_polling(
            client, handle_signals=False, handle_as_tasks=False, polling_timeout=1
        )
    )

    async def started() -> bool:
        return bool(await client.get_my_commands()) and r.exists(EVENTS_KEY) == 1

    await until(started, "the bot and its progress consumer to start")
    harness = Ops(People(users), users, r, settings, told, progress, [client])
    yield harness
    await stop(dispatcher, polling)
    await harness.progress.stop()  # a restarted consumer is not the dispatcher's
    for each in harness.clients:
        await each.session.close()
    for record in caplog.records:
        assert emulator.token not in record.getMessage()
    assert emulator.token not in str(await harness.bot_messages())


async def stop(dispatcher: Dispatcher, polling: asyncio.Task[None]) -> None:
    await dispatcher.stop_polling()
    await polling


# -- the workers' part ---------------------------------------------------------------


def figures(requests: int = 40, errors: int = 1) -> Figures:
    return Figures(
        requests=requests,
        errors=errors,
        error_rate=errors / requests,
        p50_ms=12.4,
        p95_ms=48.6,
        p99_ms=61.0,
        versions={"v1.0.1": requests},
    )


def begin(r: redis.Redis, deployment: str, hosts: list[str]) -> None:
    record = RecordStore(r).advance(deployment, "running", phase="prepare")
    append_event(
        r,
        DeployStarted(
            deployment=deployment,
            app=record.app,
            env=record.env,
            version=record.version,
            who=record.requested_by,
            hosts=hosts,
        ),
    )


def run_phases(r: redis.Redis, deployment: str, names: list[str], noisy: bool = False) -> None:
    for number, name in enumerate(names):
        append_event(r, PhaseStarted(deployment=deployment, phase=name))
        if noisy:  # what a phase prints on the hosts: the bot shows none of it
            for line in range(20):
                append_event(r, Output(deployment=deployment, phase=name, message=f"{line}"))
        append_event(r, PhaseFinished(deployment=deployment, phase=name, seconds=1.25 + number))


def stability(r: redis.Redis, deployment: str, intervals: int) -> None:
    append_event(r, PhaseStarted(deployment=deployment, phase="monitor"))
    for interval in range(1, intervals + 1):
        append_event(
            r,
            Metrics(
                deployment=deployment,
                phase="monitor",
                interval=interval,
                figures=figures(40 + interval),
            ),
        )
    append_event(r, PhaseFinished(deployment=deployment, phase="monitor", seconds=30.0))


def finish(r: redis.Redis, deployment: str, outcome: str = "live", state: Any = "live") -> None:
    append_event(
        r,
        DeployFinished(
            deployment=deployment, outcome=outcome, exit_code=0 if outcome == "live" else 1
        ),
    )
    record = RecordStore(r).advance(deployment, state)
    Lease(r, record.app, record.env).release(lease_holder(record))


def live(r: redis.Redis, deployment: str, hosts: list[str], intervals: int = 3) -> None:
    """A whole deployment that goes well, at once."""
    begin(r, deployment, hosts)
    run_phases(r, deployment, [*PHASES, "switch"], noisy=True)
    stability(r, deployment, intervals)
    run_phases(r, deployment, ["finalize"])
    finish(r, deployment)


async def deploy_staging(ops: Ops, version: str = "v1.0.1") -> str:
    reply = await ops.people.say(DANA, f"/deploy {version} staging", OPS)
    assert "queued as" in reply["text"]
    return RecordStore(ops.r).recent("shop", "staging")[0].id


def buttons(message: Message) -> list[str]:
    return [b["text"] for row in message["buttons"] for b in row]


# -- the message -----------------------------------------------------------------------


async def test_one_message_follows_a_deployment_to_live(ops: Ops) -> None:
    deployment = await deploy_staging(ops)
    first = await ops.progress_message(deployment)
    assert first["text"].splitlines()[:2] == [
        "🚀 deploy of v1.0.1 to shop/staging",
        f"requested by @dana · {deployment}",
    ]
    assert first["text"].endswith("is queued")
    assert buttons(first) == ["🛑 Abort"]

    begin(ops.r, deployment, ["s1", "s2"])
    run_phases(ops.r, deployment, ["prepare"])
    append_event(ops.r, PhaseStarted(deployment=deployment, phase="preflight"))
    mid = await ops.reads(first["message_id"], "⏳ preflight")
    assert "hosts: s1, s2" in mid["text"] and "✅ prepare 1.2 s" in mid["text"]
    assert "▫️ smoke" in mid["text"] and mid["text"].endswith("is running")

    run_phases(ops.r, deployment, [*PHASES[1:], "switch"])
    stability(ops.r, deployment, 2)
    await ops.reads(first["message_id"], "📈 stability")
    run_phases(ops.r, deployment, ["finalize"])
    finish(ops.r, deployment)
    done = await ops.reads(first["message_id"], "is live")

    lines = done["text"].splitlines()
    assert lines[2] == "hosts: s1, s2"
    assert [line.split()[1] for line in lines[3:13]] == [*PHASES, *AFTER_GATE]
    assert all(line.startswith("✅") and line.endswith(" s") for line in lines[3:13])
    assert lines[13] == (
        "📈 stability, interval 2: 42 probes, 1 errors (2.38%), p50 12 ms, p95 49 ms"
    )
    assert lines[14] == "✅ is live"
    assert buttons(done) == ["↩️ Roll back"]
    assert done["edits"] >= 3  # queued, preflight running, stability, live at least
    assert any("⏳ preflight" in text for text in done["history"])
    # The command's reply and one progress message: nothing else was posted.
    assert len(await ops.bot_messages()) == 2
    assert (await ops.counters())["too_many_requests"] == 0
    await until(lambda: _async(ops.told.calls), "the outcome hook")
    assert ops.told.calls == [(deployment, "live", "live", 2)]


async def _async(value: Any) -> Any:
    return value


async def test_the_approval_card_becomes_the_progress_message(ops: Ops) -> None:
    card = await ops.people.say(DANA, "/deploy v1.0.1", OPS)
    deployment = RecordStore(ops.r).recent("shop", "production")[0].id
    answer = await ops.people.press(BOB, OPS["id"], card, button(card, "Approve"))
    assert answer == "Approved: queued."
    taken = await ops.reads(card["message_id"], "🚀 deploy", "approved by @bob")
    assert "requested by @dana · approved by @bob" in taken["text"]
    assert buttons(taken) == ["🛑 Abort"]

    live(ops.r, deployment, ["h1"])
    done = await ops.reads(card["message_id"], "✅ is live")
    assert done["text"].startswith("🚀 deploy of v1.0.1 to shop/production")
    # The card's decision showed on the way.
    assert any(text.endswith("✅ approved by @bob") for text in done["history"])
    assert len(await ops.bot_messages()) == 1  # the card is the only message
    assert (await ops.counters())["too_many_requests"] == 0


async def test_a_rejected_card_ends_saying_so(ops: Ops) -> None:
    card = await ops.people.say(DANA, "/deploy v1.0.2", OPS)
    await ops.people.press(ADA, OPS["id"], card, button(card, "Reject"))
    done = await ops.reads(card["message_id"], "was rejected by @ada")
    assert done["buttons"] == []
    assert len(await ops.bot_messages()) == 1


async def test_an_unapproved_request_expires_and_its_card_says_so(ops: Ops) -> None:
    card = await ops.people.say(DANA, "/deploy v1.0.2", OPS)
    deployment = RecordStore(ops.r).recent("shop", "production")[0].id
    expire(ops.r, deployment, "awaiting_approval", 600)  # what RQ's scheduler runs then
    done = await ops.reads(card["message_id"], "was cancelled", "no approval within 600 s")
    assert done["buttons"] == []
    assert len(await ops.bot_messages()) == 1


async def test_a_failed_deployment_rolls_back_and_says_where_it_failed(ops: Ops) -> None:
    deployment = await deploy_staging(ops)
    begin(ops.r, deployment, ["s1"])
    run_phases(ops.r, deployment, [*PHASES, "switch"])
    append_event(ops.r, PhaseStarted(deployment=deployment, phase="monitor"))
    report = FailureReport(phase="monitor", message="error rate 12% over 5% <b>", host="s1")
    append_event(ops.r, PhaseFailure(deployment=deployment, phase="monitor", report=report))
    append_event(ops.r, RollbackStarted(deployment=deployment, phase="rollback"))
    append_event(ops.r, RollbackFinished(deployment=deployment, phase="rollback", seconds=2.5))
    append_event(
        ops.r,
        DeployFinished(deployment=deployment, outcome="rolled_back", exit_code=3, failure=report),
    )
    RecordStore(ops.r).advance(deployment, "rolled_back")
    message = await ops.progress_message(deployment)
    done = await ops.reads(message["message_id"], "was rolled back")
    assert "❌ monitor" in done["text"] and "▫️ finalize" in done["text"]
    assert "✅ rollback 2.5 s" in done["text"]
    assert "⚠️ monitor failed on s1: error rate 12% over 5% <b>" in done["text"]
    assert done["buttons"] == []
    await until(lambda: _async(ops.told.calls), "the outcome hook")
    assert ops.told.calls == [(deployment, "rolled_back", "rolled_back", 0)]


async def test_a_restarted_consumer_continues_the_same_message(ops: Ops) -> None:
    deployment = await deploy_staging(ops)
    begin(ops.r, deployment, ["s1"])
    run_phases(ops.r, deployment, PHASES[:3])
    message = await ops.progress_message(deployment)
    await ops.reads(message["message_id"], "✅ backup")

    await ops.progress.stop()
    # While it is down the deployment goes on; and a crash after reading (entries
    # delivered to this consumer, never acknowledged) must lose nothing either.
    run_phases(ops.r, deployment, PHASES[3:5])
    ops.r.xreadgroup(GROUP, "bot", {EVENTS_KEY: ">"}, count=3)
    assert ops.r.xpending(EVENTS_KEY, GROUP)["pending"] == 3
    run_phases(ops.r, deployment, [*PHASES[5:], "switch"])
    stability(ops.r, deployment, 4)
    run_phases(ops.r, deployment, ["finalize"])
    finish(ops.r, deployment)

    await ops.restart_consumer()
    done = await ops.reads(message["message_id"], "is live")
    assert all(f"✅ {name} " in done["text"] for name in [*PHASES, *AFTER_GATE])
    assert "interval 4: 44 probes" in done["text"]
    assert len(await ops.bot_messages()) == 2  # the reply and the same progress message
    assert ops.r.xpending(EVENTS_KEY, GROUP)["pending"] == 0
    await until(lambda: _async(ops.told.calls), "the outcome hook")
    assert ops.told.calls == [(deployment, "live", "live", 4)]


async def test_a_long_deployment_keeps_to_the_limits(ops: Ops) -> None:
    deployment = await deploy_staging(ops)
    message = await ops.progress_message(deployment)
    begin(ops.r, deployment, ["s1", "s2", "s3"])
    for name in [*PHASES, "switch"]:
        run_phases(ops.r, deployment, [name], noisy=True)
        await asyncio.sleep(0.3)  # phases take their time: the painter catches up
    append_event(ops.r, PhaseStarted(deployment=deployment, phase="monitor"))
    for interval in range(1, 21):
        append_event(
            ops.r,
            Metrics(deployment=deployment, phase="monitor", interval=interval, figures=figures()),
        )
        await asyncio.sleep(0.2)
    append_event(ops.r, PhaseFinished(deployment=deployment, phase="monitor", seconds=4.0))
    run_phases(ops.r, deployment, ["finalize"])
    finish(ops.r, deployment)
    done = await ops.reads(message["message_id"], "is live")
    assert "interval 20:" in done["text"]
    counted = await ops.counters()
    assert counted["too_many_requests"] == 0
    assert counted["sent"] == 2  # the reply and the progress message
    assert counted["edited"] == done["edits"] >= 2  # coalesced, and still shown on the way


async def test_forced_429s_delay_the_message_but_the_end_is_right(ops: Ops) -> None:
    deployment = await deploy_staging(ops)
    message = await ops.progress_message(deployment)
    await ops.users.call("flood", count=3, retry_after=1)
    live(ops.r, deployment, ["s1"])
    done = await ops.reads(message["message_id"], "is live")
    assert "✅ finalize" in done["text"] and buttons(done) == ["↩️ Roll back"]
    assert (await ops.counters())["too_many_requests"] == 3
    assert len(await ops.bot_messages()) == 2


# -- the buttons -------------------------------------------------------------------------


async def test_abort_asks_the_engine_to_stop_and_the_message_ends_cancelled(ops: Ops) -> None:
    deployment = await deploy_staging(ops)
    begin(ops.r, deployment, ["s1"])
    message = await ops.reads((await ops.progress_message(deployment))["message_id"], "running")
    answer = await ops.people.press(DANA, OPS["id"], message, button(message, "Abort"))
    assert answer == f"Abort requested: {deployment}."
    assert ops.r.get(CANCEL_KEY.format(id=deployment)) == b"cancelled by tg:1001"
    # The engine notices between steps, unwinds, and the job records it cancelled.
    append_event(ops.r, DeployFinished(deployment=deployment, outcome="not_switched", exit_code=1))
    RecordStore(ops.r).advance(deployment, "cancelled", note="cancelled by tg:1001")
    done = await ops.reads(message["message_id"], "🛑 was cancelled: cancelled by tg:1001")
    assert done["buttons"] == []
    assert trail(ops.r)[-1] == ("tg:1001", "cancel", "accepted")


async def test_promote_at_the_gate_lets_it_go_on(ops: Ops) -> None:
    card = await ops.people.say(DANA, "/deploy v1.0.1", OPS)
    deployment = RecordStore(ops.r).recent("shop", "production")[0].id
    await ops.people.press(BOB, OPS["id"], card, button(card, "Approve"))
    begin(ops.r, deployment, ["h1"])
    run_phases(ops.r, deployment, PHASES)
    RecordStore(ops.r).advance(
        deployment, "awaiting_promotion", phase="switch", note="promote within 600 s"
    )
    held = await ops.reads(card["message_id"], "awaits promotion: promote within 600 s")
    assert buttons(held) == ["🚀 Promote", "🛑 Abort"]

    refused = await ops.people.press(DANA, OPS["id"], held, button(held, "Promote"))
    assert refused == "⛔ This needs the approver role; you have: deployer."
    assert trail(ops.r)[-1] == ("tg:1001", "promote", "refused")
    assert RecordStore(ops.r).load(deployment).state == "awaiting_promotion"  # type: ignore[union-attr]

    answer = await ops.people.press(BOB, OPS["id"], held, button(held, "Promote"))
    assert answer == f"Promoted: {deployment}."
    going = await ops.reads(card["message_id"], "is running: promoted")
    assert buttons(going) == ["🛑 Abort"]
    again = await ops.people.press(BOB, OPS["id"], going, button(held, "Promote"), forge=True)
    assert again == f"{deployment} is running; it is not held"


async def test_roll_back_after_success_queues_a_rollback(ops: Ops) -> None:
    deployment = await deploy_staging(ops)
    live(ops.r, deployment, ["s1"])
    message = await ops.reads((await ops.progress_message(deployment))["message_id"], "is live")
    stranger = await ops.people.press(EVE, OPS["id"], message, button(message, "Roll back"))
    assert stranger.startswith("⛔ You are not on Greenlight's list.")
    assert trail(ops.r)[-1] == ("tg:666", "rollback", "refused")
    assert len(RecordStore(ops.r).recent("shop", "staging")) == 1

    answer = await ops.people.press(DANA, OPS["id"], message, button(message, "Roll back"))
    rollback = RecordStore(ops.r).recent("shop", "staging")[0]
    assert rollback.kind == "rollback" and rollback.state == "queued"
    assert answer == f"Roll back: {rollback.id}."
    # The rollback gets a progress message of its own.
    await ops.progress_message(rollback.id)


async def test_stale_buttons_never_act_on_a_newer_deployment(ops: Ops) -> None:
    first = await deploy_staging(ops, "v1.0.1")
    begin(ops.r, first, ["s1"])
    running = await ops.reads((await ops.progress_message(first))["message_id"], "running")
    abort = button(running, "Abort")
    live(ops.r, first, ["s1"])  # (begin again is a running -> running step)
    old = await ops.reads(running["message_id"], "is live")
    rollback = button(old, "Roll back")

    second = await deploy_staging(ops, "v1.0.2")
    begin(ops.r, second, ["s1"])
    late = await ops.people.press(DANA, OPS["id"], old, abort, forge=True)
    assert late == f"cannot cancel {first}: it is no longer in progress"
    assert not ops.r.exists(CANCEL_KEY.format(id=second))
    live(ops.r, second, ["s1"])
    await ops.reads((await ops.progress_message(second))["message_id"], "is live")

    stale = await ops.people.press(DANA, OPS["id"], old, rollback)
    assert stale == f"cannot roll back {first}: {second} came after it on shop/staging"
    assert [r.id for r in RecordStore(ops.r).recent("shop", "staging")] == [second, first]
    assert trail(ops.r)[-2:] == [
        ("tg:1001", "cancel", "refused"),
        ("tg:1001", "rollback", "refused"),
    ]
    assert [e.target for e in read_audit(ops.r)[-2:]] == [first, first]


def test_button_data_is_small_and_carries_no_command() -> None:
    packed = Steer(action=Action.rollback, handle=10**12).pack()
    assert packed == "gp:rollback:1000000000000" and len(packed.encode()) <= 64


async def test_api_expectations_refuse_another_deployment(r: redis.Redis) -> None:
    answer = api.request_deployment(r, SPECS, app=None, env="staging", version="v1.0.1", who="a")
    assert answer.deployment is not None
    other = api.cancel(r, SPECS, app=None, env="staging", who="a", deployment="staging-v0-x")
    assert not other.accepted and other.reason == (
        "cannot cancel staging-v0-x: it is no longer in progress"
    )
    assert not r.exists(CANCEL_KEY.format(id=answer.deployment))
    mine = api.cancel(r, SPECS, app=None, env="staging", who="a", deployment=answer.deployment)
    assert mine.accepted


async def test_a_forged_progress_button_is_refused_and_audited(ops: Ops) -> None:
    deployment = await deploy_staging(ops)
    message = await ops.progress_message(deployment)
    answer = await ops.people.press(DANA, OPS["id"], message, "gp:abort:999", forge=True)
    assert answer == "This button is not one of Greenlight's."
    assert not ops.r.exists(CANCEL_KEY.format(id=deployment))
    assert trail(ops.r)[-1] == ("tg:1001", "abort", "refused")
