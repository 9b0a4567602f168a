"""The real bot (aiogram, long polling) against the Bot API emulator and a private
Redis: what people in the ops chat and elsewhere see, what lands in Redis (records, the
RQ queue, no workers) and in the audit trail."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from bot.buttons import Decide, Decision
from bot.emulator import Emulator
from bot.render import COMMANDS
from jobs.queue import job_id, queue
from jobs.records import RecordStore
from jobs.streams import read_audit
from tests.bot.chat import People
from tests.bot.conftest import Users
from tests.bot.running import ADA, BOB, DANA, ELSEWHERE, EVE, OPS, running_bot, settings_for
from tests.jobs.test_api import make_spec

SPECS = {"shop": make_spec(promote="manual", promote_timeout=600)}


def private(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "type": "private"}


@pytest.fixture
async def people(
    emulator: Emulator, users: Users, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[People]:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(emulator)
    async with running_bot(settings, users, r, SPECS) as client:
        menu = [c.command for c in await client.get_my_commands()]
        assert menu == [*COMMANDS]
        chats = People(users)
        yield chats
    for record in caplog.records:
        assert emulator.token not in record.getMessage()
    for chat_id in (OPS["id"], ELSEWHERE["id"], DANA["id"], BOB["id"], ADA["id"], EVE["id"]):
        assert emulator.token not in str(await chats.messages(chat_id))


def trail(r: redis.Redis) -> list[tuple[str, str, str]]:
    return [(e.who, e.action, e.result) for e in read_audit(r)]


def button(card: dict[str, Any], text: str) -> str:
    return next(b["callback_data"] for row in card["buttons"] for b in row if text in b["text"])


async def test_a_production_deploy_waits_for_someone_else_to_approve(
    people: People, r: redis.Redis
) -> None:
    card = await people.say(DANA, "/deploy v1.0.1", OPS)
    assert "deploy</b> of <code>v1.0.1</code>" not in card["text"]  # text is rendered
    assert card["text"].startswith("🚦 deploy of v1.0.1 to shop/production")
    assert "requested by @dana" in card["text"] and "awaits approval" in card["text"]
    assert [b["text"] for row in card["buttons"] for b in row] == ["✅ Approve", "❌ Reject"]
    deployment = RecordStore(r).recent("shop", "production")[0].id
    assert queue(r).count == 0

    answer = await people.press(BOB, OPS["id"], card, button(card, "Approve"))
    assert answer == "Approved: queued."
    decided = await people.card(OPS["id"], card)
    assert decided["text"].endswith("✅ approved by @bob") and decided["buttons"] == []
    assert queue(r).job_ids == [job_id(deployment, "prepare")]
    record = RecordStore(r).load(deployment)
    assert record is not None and (record.state, record.approved_by) == ("queued", "tg:1002")

    again = await people.press(BOB, OPS["id"], decided, button(card, "Approve"), forge=True)
    assert again == f"cannot approve {deployment}: it is queued"
    assert (await people.card(OPS["id"], card))["edits"] == 1
    assert trail(r) == [
        ("tg:1001", "deploy", "accepted"),
        ("tg:1002", "approve", "accepted"),
        ("tg:1002", "approve", "refused"),
    ]


async def test_a_rejected_request_says_who_rejected_it(people: People, r: redis.Redis) -> None:
    card = await people.say(DANA, "/deploy v1.0.2", OPS)
    answer = await people.press(ADA, OPS["id"], card, button(card, "Reject"))
    assert answer == "Rejected."
    decided = await people.card(OPS["id"], card)
    assert decided["text"].endswith("❌ rejected by @ada") and decided["buttons"] == []
    assert RecordStore(r).recent("shop", "production")[0].state == "rejected"
    assert queue(r).count == 0


async def test_the_requester_cannot_approve_their_own_request(
    people: People, r: redis.Redis
) -> None:
    card = await people.say(BOB, "/deploy v1.0.1", OPS)
    answer = await people.press(BOB, OPS["id"], card, button(card, "Approve"))
    assert answer == "tg:1002 asked for it; someone else has to approve it"
    still = await people.card(OPS["id"], card)
    assert still["edits"] == 0 and len(still["buttons"][0]) == 2
    assert queue(r).count == 0
    assert trail(r)[-1] == ("tg:1002", "approve", "refused")


async def test_a_deployer_cannot_approve(people: People, r: redis.Redis) -> None:
    card = await people.say(BOB, "/deploy v1.0.1", OPS)
    answer = await people.press(DANA, OPS["id"], card, button(card, "Approve"))
    assert answer == "⛔ This needs the approver role; you have: deployer."
    assert RecordStore(r).recent("shop", "production")[0].state == "awaiting_approval"
    assert trail(r)[-1] == ("tg:1001", "approve", "refused")


@pytest.mark.parametrize(
    "data",
    [
        "gl:approve:999",  # the right shape, a card that never existed
        "approve:production-v1.0.1-20261129_000000",
        "rm -rf / ; /deploy v6.6.6",
    ],
)
async def test_forged_button_data_changes_nothing(
    people: People, r: redis.Redis, data: str
) -> None:
    card = await people.say(DANA, "/deploy v1.0.1", OPS)
    answer = await people.press(BOB, OPS["id"], card, data, forge=True)
    assert answer == "This button is not one of Greenlight's."
    assert RecordStore(r).recent("shop", "production")[0].state == "awaiting_approval"
    assert queue(r).count == 0
    assert trail(r)[-1] == ("tg:1002", "press", "refused")


def test_button_data_is_small() -> None:
    packed = Decide(action=Decision.approve, request=10**12).pack()
    assert packed == "gl:approve:1000000000000" and len(packed.encode()) <= 64


async def test_staging_needs_no_approval_and_is_queued_at_once(
    people: People, r: redis.Redis
) -> None:
    reply = await people.say(DANA, "/deploy v1.0.1 staging", OPS)
    deployment = RecordStore(r).recent("shop", "staging")[0].id
    assert reply["text"] == f"✅ deploy queued as {deployment}; no approval needed."
    assert reply["buttons"] == []
    assert queue(r).job_ids == [job_id(deployment, "prepare")]


async def test_rollback_is_queued_without_approval(people: People, r: redis.Redis) -> None:
    reply = await people.say(DANA, "/rollback staging", OPS)
    deployment = RecordStore(r).recent("shop", "staging")[0].id
    assert deployment.startswith("staging-rollback-")
    assert reply["text"] == f"✅ rollback: {deployment} is queued."
    assert queue(r).job_ids == [job_id(deployment, "plan")]


async def test_cancel_ends_a_request_awaiting_approval(people: People, r: redis.Redis) -> None:
    card = await people.say(DANA, "/deploy v1.0.1", OPS)
    deployment = RecordStore(r).recent("shop", "production")[0].id
    reply = await people.say(DANA, "/cancel", OPS)
    assert reply["text"] == f"✅ cancel: {deployment} was cancelled."
    late = await people.press(BOB, OPS["id"], card, button(card, "Approve"))
    assert late == f"cannot approve {deployment}: it was cancelled"
    nothing = await people.say(DANA, "/cancel", OPS)
    assert nothing["text"] == (
        "⛔ nothing to cancel on shop/production: no deployment is in progress"
    )


async def test_promote_lets_a_held_deployment_go_on(people: People, r: redis.Redis) -> None:
    await people.say(DANA, "/deploy v1.0.1 staging", OPS)
    deployment = RecordStore(r).recent("shop", "staging")[0].id
    refused = await people.say(BOB, "/promote staging", OPS)
    assert refused["text"] == f"⛔ {deployment} is queued; it is not held"
    # What a worker does after smoke under `promote: manual`.
    RecordStore(r).advance(deployment, "running", phase="prepare")
    RecordStore(r).advance(deployment, "awaiting_promotion")
    queue(r).empty()
    promoted = await people.say(BOB, "/promote staging", OPS)
    assert promoted["text"] == f"✅ promote: {deployment} is running."
    assert queue(r).count == 1
    assert trail(r)[-1] == ("tg:1002", "promote", "accepted")


async def test_an_admin_locks_and_unlocks(people: People, r: redis.Redis) -> None:
    locked = await people.say(ADA, "/lock production migrating the <db> & more", OPS)
    assert locked["text"] == "✅ locked: shop/production."
    refused = await people.say(DANA, "/deploy v1.0.1", OPS)
    assert "locked" in refused["text"] and "migrating the <db> & more" in refused["text"]
    assert RecordStore(r).recent("shop", "production") == []
    envs = await people.say(DANA, "/envs", OPS)
    assert "shop/production (default): approval required" in envs["text"]
    assert "🔒 tg:1003: migrating the <db> & more" in envs["text"]
    not_admin = await people.say(DANA, "/unlock production", OPS)
    assert not_admin["text"] == "⛔ This needs the admin role; you have: deployer."
    unlocked = await people.say(ADA, "/unlock production", OPS)
    assert unlocked["text"] == "✅ unlocked: shop/production."
    card = await people.say(DANA, "/deploy v1.0.1", OPS)
    assert card["buttons"]


async def test_history_lists_the_last_requests(people: People, r: redis.Redis) -> None:
    await people.say(DANA, "/deploy v1.0.1 staging", OPS)
    busy = await people.say(DANA, "/deploy v1.0.2 staging", OPS)
    assert busy["text"].startswith("⛔ ")  # one deployment at a time: v1.0.1 holds it
    card = await people.say(DANA, "/deploy v1.0.3", OPS)
    await people.press(BOB, OPS["id"], card, button(card, "Approve"))
    staging = RecordStore(r).recent("shop", "staging")[0]
    production = RecordStore(r).recent("shop", "production")[0]
    reply = await people.say(DANA, "/history staging 1", OPS)
    assert reply["text"].splitlines() == [
        "shop/staging, newest first:",
        f"{staging.id} deploy v1.0.1 is queued (by @dana)",
    ]
    reply = await people.say(DANA, "/history", OPS)
    assert reply["text"].splitlines() == [
        "shop/production, newest first:",
        f"{production.id} deploy v1.0.3 is queued (by @dana, approved by @bob)",
    ]
    bad = await people.say(DANA, "/history staging lots", OPS)
    assert bad["text"].startswith("⚠️ N must be a number from 1 to 50, not 'lots'")


async def test_help_explains_every_command_and_whoami_answers_anyone(people: People) -> None:
    reply = await people.say(DANA, "/help", OPS)
    for command in ("deploy", "rollback", "history", "lock", "unlock", "cancel", "promote"):
        assert f"/{command}" in reply["text"]
    assert "e.g. /deploy v1.0.1" in reply["text"]
    me = await people.say(EVE, "/whoami", private(EVE))
    assert me["text"] == "You are @eve, id 666. Roles: none (not on the list)."
    ada = await people.say(ADA, "/whoami", private(ADA))
    assert ada["text"] == "You are @ada, id 1003. Roles: admin, approver, deployer."


async def test_a_stranger_in_the_ops_chat_is_refused(people: People, r: redis.Redis) -> None:
    reply = await people.say(EVE, "/deploy v1.0.1 staging", OPS)
    assert reply["text"].startswith("⛔ You are not on Greenlight's list.")
    assert RecordStore(r).recent("shop", "staging") == []
    assert read_audit(r)[-1].model_dump(include={"who", "action", "result", "reason"}) == {
        "who": "tg:666",
        "action": "deploy",
        "result": "refused",
        "reason": "not on the list",
    }


async def test_a_listed_person_writing_privately_is_sent_to_the_ops_chat(
    people: People, r: redis.Redis
) -> None:
    reply = await people.say(DANA, "/deploy v1.0.1 staging", private(DANA))
    assert reply["text"] == "⛔ Commands work only in the ops chat."
    stranger = await people.say(EVE, "/help", private(EVE))
    assert stranger["text"].startswith("⛔ You are not on Greenlight's list.")
    assert RecordStore(r).recent("shop", "staging") == []
    assert trail(r) == [("tg:1001", "deploy", "refused"), ("tg:666", "help", "refused")]


async def test_a_command_in_another_group_gets_no_answer(people: People, r: redis.Redis) -> None:
    await people.say_only(DANA, "/deploy v1.0.1 staging", ELSEWHERE)
    me = await people.say(DANA, "/whoami", ELSEWHERE)  # handled after the deploy
    assert me["text"].startswith("You are @dana")
    assert me["text"].endswith(f"This chat's id: {ELSEWHERE['id']}.")  # for the settings
    assert len(await people.bot_messages(ELSEWHERE["id"])) == 1
    assert RecordStore(r).recent("shop", "staging") == []
    entry = read_audit(r)[-1]
    assert (entry.action, entry.result, entry.reason) == (
        "deploy",
        "refused",
        f"outside the ops chat (chat {ELSEWHERE['id']})",
    )


async def test_a_command_for_another_bot_is_ignored(people: People, r: redis.Redis) -> None:
    await people.say_only(DANA, "/deploy@other_bot v1.0.1 staging", OPS)
    reply = await people.say(DANA, "/deploy@greenlight_bot v1.0.2 staging", OPS)
    assert "queued as staging-v1.0.2-" in reply["text"]
    assert [rec.version for rec in RecordStore(r).recent("shop", "staging")] == ["v1.0.2"]
    assert len(await people.bot_messages(OPS["id"])) == 1


@pytest.mark.parametrize(
    ("words", "reply"),
    [
        ("v1.0.1;reboot", "⛔ version 'v1.0.1;reboot' is not semver; expected e.g. v1.0.1"),
        ("$(id)", "⛔ version '$(id)' is not semver"),
        ("`id`", "⛔ version '`id`' is not semver"),
        ("<b>v1</b>", "⛔ version '<b>v1</b>' is not semver"),
        ("ѵ1.0.1", "⛔ version '\\u0475" + "1.0.1' contains characters outside printable ASCII"),
        ("v１.0.1", "⛔ version 'v\\uff11.0.1' contains characters outside printable ASCII"),
        ("", "⚠️ say which version to deploy\nUsage: /deploy [APP] VERSION [ENV], e.g."),
        ("v1.0.1 prod", "⚠️ unknown environment 'prod' for shop (known: production, staging)"),
        ("v1.0.1 staging now", "⚠️ too many words"),
    ],
)
async def test_malformed_deploys_are_refused_precisely(
    people: People, r: redis.Redis, words: str, reply: str
) -> None:
    answer = await people.say(DANA, f"/deploy {words}", OPS)
    assert answer["text"].startswith(reply)
    assert RecordStore(r).recent("shop", "production") == []
    assert RecordStore(r).recent("shop", "staging") == []
    assert queue(r).count == 0
    assert trail(r) == [("tg:1001", "deploy", "refused")]


async def test_a_reply_telegram_holds_back_with_429_arrives_after_the_wait(
    people: People, users: Users
) -> None:
    await users.call("flood", count=1, retry_after=1)
    reply = await people.say(DANA, "/envs", OPS)
    assert reply["text"].startswith("shop/production")
    counted = await users.call("counters")
    assert counted["too_many_requests"] == 1  # type: ignore[index]
