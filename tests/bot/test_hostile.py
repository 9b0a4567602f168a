"""A hostile corpus through the real bot (aiogram dispatcher, long polling) and the Bot
API emulator, with a private Redis: people who do not belong, presses that should not
count, forged and stale buttons, malformed and look-alike arguments, commands for other
bots. Each input gets the right refusal (or silence where answering is wrong), changes
nothing (no record, no lease, no RQ job) and leaves the audit entry it should.

Inputs that are not Greenlight's (another bot's command, a look-alike of a command, a
channel post) get no answer and no audit entry: nobody addressed Greenlight, and an
audit trail of other bots' traffic would bury the attempts that matter.

Silence is proven, not waited for: updates are handled one at a time, so once a probe's
later /whoami is answered, the input before it was handled and said nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import redis

from bot.buttons import CARD_KEY
from bot.emulator import Emulator
from deploy.spec import parse_spec
from jobs.lease import Lease
from jobs.queue import queue
from jobs.records import RecordStore
from jobs.streams import AuditEntry, read_audit
from jobs.work import expire
from tests.bot.chat import People, until
from tests.bot.conftest import Users
from tests.bot.running import (
    ADA,
    BOB,
    CARL,
    CHANNEL,
    DANA,
    ELSEWHERE,
    EVE,
    OPS,
    running_bot,
    settings_for,
)
from tests.jobs.test_api import make_spec
from tests.redis_server import free_port

SPECS = {"shop": make_spec("shop"), "ledger": make_spec("ledger")}
TARGETS = [(app, env) for app in SPECS for env in ("production", "staging")]
PROBE = {"id": 4242, "first_name": "Probe"}  # only ever asks /whoami, privately
ANONYMOUS_ADMIN = {"id": 1087968824, "first_name": "Group", "username": "GroupAnonymousBot"}

NOT_LISTED = "⛔ You are not on Greenlight's list. Send /whoami privately to get your id."
OPS_ONLY = "⛔ Commands work only in the ops chat."
UNKNOWN_BUTTON = "This button is not one of Greenlight's."


def private(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "type": "private"}


@dataclass(frozen=True)
class Case:
    name: str
    user: dict[str, Any]
    chat: dict[str, Any]
    text: str
    reply: str | None  # the start of the one reply; None: no reply at all
    audit: tuple[str, str] | None  # (action, part of the reason); None: not Greenlight's


LONG = "v" + "1" * 3000
CASES = [
    # People who do not belong, where they are.
    Case(
        "stranger in ops",
        EVE,
        OPS,
        "/deploy shop v1.0.1",
        NOT_LISTED,
        ("deploy", "not on the list"),
    ),
    Case(
        "stranger locks",
        EVE,
        OPS,
        "/lock shop production mine",
        NOT_LISTED,
        ("lock", "not on the list"),
    ),
    Case("stranger status", EVE, OPS, "/status shop", NOT_LISTED, ("status", "not on the list")),
    Case(
        "stranger privately",
        EVE,
        private(EVE),
        "/deploy shop v1.0.1",
        NOT_LISTED,
        ("deploy", "outside the ops chat"),
    ),
    Case(
        "stranger elsewhere",
        EVE,
        ELSEWHERE,
        "/deploy shop v1.0.1",
        None,
        ("deploy", "outside the ops chat"),
    ),
    Case(
        "anonymous admin",
        ANONYMOUS_ADMIN,
        OPS,
        "/unlock shop",
        NOT_LISTED,
        ("unlock", "not on the list"),
    ),
    Case(
        "deployer privately",
        DANA,
        private(DANA),
        "/deploy shop v1.0.1",
        OPS_ONLY,
        ("deploy", "outside the ops chat"),
    ),
    Case(
        "admin privately",
        ADA,
        private(ADA),
        "/lock shop production x",
        OPS_ONLY,
        ("lock", "outside the ops chat"),
    ),
    Case(
        "deployer in another group",
        DANA,
        ELSEWHERE,
        "/deploy shop v1.0.1 staging",
        None,
        ("deploy", "outside the ops chat"),
    ),
    Case(
        "admin in another group",
        ADA,
        ELSEWHERE,
        "/unlock shop",
        None,
        ("unlock", "outside the ops chat"),
    ),
    # Listed, but without the role.
    Case(
        "deployer locks",
        DANA,
        OPS,
        "/lock shop production mine",
        "⛔ This needs the admin role; you have: deployer.",
        ("lock", "needs the admin role"),
    ),
    Case(
        "deployer promotes",
        DANA,
        OPS,
        "/promote shop",
        "⛔ This needs the approver role; you have: deployer.",
        ("promote", "needs the approver role"),
    ),
    Case(
        "approver deploys",
        CARL,
        OPS,
        "/deploy shop v1.0.1 staging",
        "⛔ This needs the deployer role; you have: approver.",
        ("deploy", "needs the deployer role"),
    ),
    Case(
        "approver rolls back",
        CARL,
        OPS,
        "/rollback shop staging",
        "⛔ This needs the deployer role; you have: approver.",
        ("rollback", "needs the deployer role"),
    ),
    # Malformed and oversized.
    Case(
        "no version",
        DANA,
        OPS,
        "/deploy shop",
        "⚠️ say which version to deploy\nUsage: /deploy [APP] VERSION [ENV]",
        ("deploy", "say which version"),
    ),
    Case(
        "no app of two",
        DANA,
        OPS,
        "/deploy v1.0.1",
        "⚠️ name the app first: ledger, shop",
        ("deploy", "name the app first"),
    ),
    Case(
        "too many words",
        DANA,
        OPS,
        "/deploy shop v1.0.1 staging now",
        "⚠️ too many words",
        ("deploy", "too many words"),
    ),
    Case(
        "history zero",
        DANA,
        OPS,
        "/history shop staging 0",
        "⚠️ N must be a number from 1 to 50, not '0'",
        ("history", "N must be"),
    ),
    Case(
        "history negative",
        DANA,
        OPS,
        "/history shop staging -1",
        "⚠️ N must be a number from 1 to 50, not '-1'",
        ("history", "N must be"),
    ),
    Case(
        "history full-width digit",
        DANA,
        OPS,
        "/history shop staging ９",
        "⚠️ N must be a number from 1 to 50, not '\\uff19'",
        ("history", "N must be"),
    ),
    Case(
        "lock without reason",
        ADA,
        OPS,
        "/lock shop production",
        "⚠️ say why: a lock needs a reason",
        ("lock", "say why"),
    ),
    Case(
        "cancel with words",
        DANA,
        OPS,
        "/cancel shop staging now please",
        "⚠️ unexpected 'now please'",
        ("cancel", "unexpected"),
    ),
    Case(
        "long version",
        DANA,
        OPS,
        f"/deploy shop {LONG}",
        "⛔ version is too long (3001 characters, at most 64)",
        ("deploy", "version is too long"),
    ),
    Case(
        "long environment",
        DANA,
        OPS,
        f"/deploy shop v1.0.1 {'s' * 3000}",
        "⚠️ unknown environment 'sss",
        ("deploy", "unknown environment"),
    ),
    Case(
        "long lock reason",
        ADA,
        OPS,
        f"/lock shop production {'x ' * 1500}",
        "⛔ the reason is longer than 200 characters",
        ("lock", "longer than 200"),
    ),
    Case(
        "long trailing words",
        ADA,
        OPS,
        f"/unlock shop staging {'y' * 3500}",
        "⚠️ unexpected 'yyy",
        ("unlock", "unexpected"),
    ),
    # Shell metacharacters and markup in versions.
    Case(
        "semicolon",
        DANA,
        OPS,
        "/deploy shop v1.0.1;reboot",
        "⛔ version 'v1.0.1;reboot' is not semver",
        ("deploy", "is not semver"),
    ),
    Case(
        "command substitution",
        DANA,
        OPS,
        "/deploy shop $(reboot)",
        "⛔ version '$(reboot)' is not semver",
        ("deploy", "is not semver"),
    ),
    Case(
        "backticks",
        DANA,
        OPS,
        "/deploy shop `id`",
        "⛔ version '`id`' is not semver",
        ("deploy", "is not semver"),
    ),
    Case(
        "and-and",
        DANA,
        OPS,
        "/deploy shop v1.0.1&&id",
        "⛔ version 'v1.0.1&&id' is not semver",
        ("deploy", "is not semver"),
    ),
    Case(
        "pipe",
        DANA,
        OPS,
        "/deploy shop v1.0.1|nc",
        "⛔ version 'v1.0.1|nc' is not semver",
        ("deploy", "is not semver"),
    ),
    Case(
        "redirect",
        DANA,
        OPS,
        "/deploy shop v1.0.1>/etc/passwd",
        "⛔ version 'v1.0.1>/etc/passwd' is not semver",
        ("deploy", "is not semver"),
    ),
    Case(
        "path traversal",
        DANA,
        OPS,
        "/deploy shop ../../etc/passwd",
        "⛔ version '../../etc/passwd' is not semver",
        ("deploy", "is not semver"),
    ),
    Case(
        "newline",
        DANA,
        OPS,
        "/deploy shop v1.0.1\nreboot",
        "⚠️ unknown environment 'reboot' for shop",
        ("deploy", "unknown environment"),
    ),
    Case(
        "html",
        DANA,
        OPS,
        "/deploy shop <b>v1</b>",
        "⛔ version '<b>v1</b>' is not semver",
        ("deploy", "is not semver"),
    ),
    Case(
        "rollback to metachar",
        DANA,
        OPS,
        "/rollback shop staging v1;id",
        "⛔ version 'v1;id' is not semver",
        ("rollback", "is not semver"),
    ),
    # Look-alikes: homoglyphs, full-width, zero-width, direction marks.
    Case(
        "cyrillic izhitsa",
        DANA,
        OPS,
        "/deploy shop ѵ1.0.1",
        "⛔ version '\\u0475" + "1.0.1' contains characters outside printable ASCII",
        ("deploy", "outside printable ASCII"),
    ),
    Case(
        "full-width digit",
        DANA,
        OPS,
        "/deploy shop v１.0.1",
        "⛔ version 'v\\uff11.0.1' contains characters outside printable ASCII",
        ("deploy", "outside printable ASCII"),
    ),
    Case(
        "zero-width space",
        DANA,
        OPS,
        "/deploy shop v1.0.1\u200b",
        "⛔ version 'v1.0.1\\u200b' contains characters outside printable ASCII",
        ("deploy", "outside printable ASCII"),
    ),
    Case(
        "right-to-left override",
        DANA,
        OPS,
        "/deploy shop v1.0.1\u202e",
        "⛔ version 'v1.0.1\\u202e' contains characters outside printable ASCII",
        ("deploy", "outside printable ASCII"),
    ),
    Case(
        "one-dot leader",
        DANA,
        OPS,
        "/deploy shop v1\u20240\u20241",
        "⛔ version 'v1\\u2024" + "0\\u2024" + "1' contains characters outside printable ASCII",
        ("deploy", "outside printable ASCII"),
    ),
    Case(
        "cyrillic app",
        DANA,
        OPS,
        "/deploy ѕhop v1.0.1",
        "⚠️ name the app first: ledger, shop",
        ("deploy", "name the app first"),
    ),
    Case(
        "full-width app",
        DANA,
        OPS,
        "/deploy ｓｈｏｐ v1.0.1",
        "⚠️ name the app first: ledger, shop",
        ("deploy", "name the app first"),
    ),
    Case(
        "zero-width environment",
        DANA,
        OPS,
        "/deploy shop v1.0.1 staging\u200b",
        "⚠️ unknown environment 'staging\\u200b' for shop",
        ("deploy", "unknown environment"),
    ),
    Case(
        "cyrillic environment",
        DANA,
        OPS,
        "/deploy shop v1.0.1 ѕtaging",
        "⚠️ unknown environment '\\u0455taging' for shop",
        ("deploy", "unknown environment"),
    ),
    Case(
        "zero-width app",
        DANA,
        OPS,
        "/status sh\u200bop",
        "⚠️ name the app first: ledger, shop",
        ("status", "name the app first"),
    ),
    # Not Greenlight's to answer: other bots' commands, look-alike commands, channels.
    Case("another bot", DANA, OPS, "/deploy@other_bot shop v1.0.1 staging", None, None),
    Case(
        "a look-alike of our name",
        DANA,
        OPS,
        "/deploy@greenIight_bot shop v1.0.1 staging",
        None,
        None,
    ),
    Case(
        "our name with a suffix",
        DANA,
        OPS,
        "/deploy@greenlight_bot_evil shop v1.0.1 staging",
        None,
        None,
    ),
    Case("another bot, stranger", EVE, OPS, "/lock@other_bot shop production x", None, None),
    Case("full-width slash", DANA, OPS, "／deploy shop v1.0.1 staging", None, None),
    Case("zero-width in the command", DANA, OPS, "/dep\u200bloy shop v1.0.1 staging", None, None),
    Case("upper case command", DANA, OPS, "/DEPLOY shop v1.0.1 staging", None, None),
    Case("a channel post", DANA, CHANNEL, "/deploy shop v1.0.1 staging", None, None),
]


@pytest.fixture
async def people(
    emulator: Emulator, users: Users, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[People]:
    caplog.set_level(logging.DEBUG)
    async with running_bot(settings_for(emulator), users, r, SPECS):
        yield People(users)


async def handled(people: People) -> None:
    """Every update sent so far has been handled: the probe's /whoami was answered."""
    await people.say(PROBE, "/whoami", private(PROBE))


def assert_nothing_changed(r: redis.Redis) -> None:
    for app, env in TARGETS:
        assert RecordStore(r).recent(app, env) == [], (app, env)
        assert Lease(r, app, env).holder() is None and Lease(r, app, env).sticky() is None
    assert queue(r).count == 0


def assert_audited(
    entries: list[AuditEntry], user: dict[str, Any], expected: tuple[str, str] | None
) -> None:
    if expected is None:
        assert entries == []
        return
    action, reason = expected
    assert [(e.who, e.action, e.result) for e in entries] == [
        (f"tg:{user['id']}", action, "refused")
    ]
    assert reason in entries[0].reason


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_commands_change_nothing(people: People, r: redis.Redis, case: Case) -> None:
    audited = len(read_audit(r, 1000))
    before = len(await people.bot_messages(case.chat["id"]))
    await people.say_only(case.user, case.text, case.chat)
    await handled(people)
    replies = (await people.bot_messages(case.chat["id"]))[before:]
    if case.reply is None:
        assert replies == []
    else:
        assert len(replies) == 1 and replies[0]["text"].startswith(case.reply), replies
        assert len(replies[0]["text"]) <= 4096
    assert_nothing_changed(r)
    assert_audited(read_audit(r, 1000)[audited:], case.user, case.audit)


async def test_our_own_name_is_accepted_in_any_case(people: People, r: redis.Redis) -> None:
    reply = await people.say(DANA, "/deploy@GreenLight_Bot shop v1.0.2 staging", OPS)
    assert reply["text"].startswith("✅ deploy queued as shop-staging-v1.0.2-")
    assert queue(r).count == 1


# -- buttons ------------------------------------------------------------------------


@dataclass(frozen=True)
class Press:
    name: str
    presser: dict[str, Any]
    data: str  # "Approve"/"Reject": the card's own button; anything else is forged
    answer: str
    audit: tuple[str, str]
    requester: dict[str, Any] | None = None  # Dana, unless said
    where: str = "card"  # "card", or "elsewhere": on a bot message in another group


PRESSES = [
    Press("stranger approves", EVE, "Approve", NOT_LISTED, ("approve", "not on the list")),
    Press("stranger rejects", EVE, "Reject", NOT_LISTED, ("reject", "not on the list")),
    Press(
        "deployer approves",
        DANA,
        "Approve",
        "⛔ This needs the approver role; you have: deployer.",
        ("approve", "needs the approver role"),
    ),
    Press(
        "deployer rejects",
        DANA,
        "Reject",
        "⛔ This needs the approver role; you have: deployer.",
        ("reject", "needs the approver role"),
    ),
    Press(
        "own request, four eyes",
        BOB,
        "Approve",
        "tg:1002 asked for it; someone else has to approve it",
        ("approve", "someone else has to approve"),
        requester=BOB,
    ),
    Press(
        "approve from another group",
        BOB,
        "Approve",
        OPS_ONLY,
        ("approve", "outside the ops chat"),
        where="elsewhere",
    ),
    Press(
        "never-issued handle",
        BOB,
        "gl:approve:999",
        UNKNOWN_BUTTON,
        ("press", "not a button Greenlight sent"),
    ),
    Press(
        "negative handle",
        BOB,
        "gl:approve:-1",
        UNKNOWN_BUTTON,
        ("press", "not a button Greenlight sent"),
    ),
    Press(
        "huge handle",
        BOB,
        "gl:approve:" + "9" * 50,
        UNKNOWN_BUTTON,
        ("press", "not a button Greenlight sent"),
    ),
    Press(
        "handle not a number",
        BOB,
        "gl:approve:abc",
        UNKNOWN_BUTTON,
        ("press", "not a button Greenlight sent"),
    ),
    Press(
        "unknown action",
        BOB,
        "gl:nuke:1",
        UNKNOWN_BUTTON,
        ("press", "not a button Greenlight sent"),
    ),
    Press(
        "extra field",
        BOB,
        "gl:approve:1:extra",
        UNKNOWN_BUTTON,
        ("press", "not a button Greenlight sent"),
    ),
    Press(
        "cyrillic action",
        BOB,
        "gl:аpprove:1",
        UNKNOWN_BUTTON,
        ("press", "not a button Greenlight sent"),
    ),
    Press(
        "a command as data",
        BOB,
        "/deploy shop v6.6.6 staging",
        UNKNOWN_BUTTON,
        ("press", "not a button Greenlight sent"),
    ),
    Press(
        "shell as data",
        BOB,
        "rm -rf / ; reboot",
        UNKNOWN_BUTTON,
        ("press", "not a button Greenlight sent"),
    ),
    Press(
        "64 bytes of junk", BOB, "x" * 64, UNKNOWN_BUTTON, ("press", "not a button Greenlight sent")
    ),
]


async def request(
    people: People, r: redis.Redis, requester: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    card = await people.say(requester, "/deploy shop v1.0.1", OPS)
    assert card["buttons"], card
    return card, RecordStore(r).recent("shop", "production")[0].id


def button(card: dict[str, Any], text: str) -> str:
    return next(b["callback_data"] for row in card["buttons"] for b in row if text in b["text"])


@pytest.mark.parametrize("press", PRESSES, ids=[p.name for p in PRESSES])
async def test_hostile_presses_change_nothing(people: People, r: redis.Redis, press: Press) -> None:
    card, deployment = await request(people, r, press.requester or DANA)
    data = button(card, press.data) if press.data in ("Approve", "Reject") else press.data
    target, chat_id = card, OPS["id"]
    if press.where == "elsewhere":
        target, chat_id = await people.say(BOB, "/whoami", ELSEWHERE), ELSEWHERE["id"]
    audited = len(read_audit(r, 1000))
    answer = await people.press(press.presser, chat_id, target, data, forge=True)
    assert answer == press.answer
    record = RecordStore(r).load(deployment)
    assert record is not None and record.state == "awaiting_approval"
    assert (await people.card(OPS["id"], card))["edits"] == 0
    assert queue(r).count == 0
    assert_audited(read_audit(r, 1000)[audited:], press.presser, press.audit)


async def test_a_replayed_approval_counts_once(people: People, r: redis.Redis) -> None:
    card, deployment = await request(people, r, DANA)
    assert await people.press(BOB, OPS["id"], card, button(card, "Approve")) == "Approved: queued."
    audited = len(read_audit(r, 1000))
    for data, action in ((button(card, "Approve"), "approve"), (button(card, "Reject"), "reject")):
        again = await people.press(ADA, OPS["id"], card, data, forge=True)
        assert again == f"cannot {action} {deployment}: it is queued"
    assert queue(r).count == 1  # the first approval's job, and no other
    record = RecordStore(r).load(deployment)
    assert record is not None and (record.state, record.approved_by) == ("queued", "tg:1002")
    entries = read_audit(r, 1000)[audited:]
    assert [(e.who, e.action, e.result) for e in entries] == [
        ("tg:1003", "approve", "refused"),
        ("tg:1003", "reject", "refused"),
    ]


@pytest.mark.parametrize("how", ["expired", "cancelled", "forgotten"])
async def test_a_stale_card_changes_nothing(people: People, r: redis.Redis, how: str) -> None:
    card, deployment = await request(people, r, DANA)
    if how == "expired":  # what RQ's scheduler runs after approval_timeout
        expire(r, deployment, "awaiting_approval", 3600)
        want = f"cannot approve {deployment}: it was cancelled"
    elif how == "cancelled":
        await people.say(DANA, "/cancel shop", OPS)
        want = f"cannot approve {deployment}: it was cancelled"
    else:  # the card's handle outlived its CARD_DAYS in Redis
        r.delete(CARD_KEY.format(handle=button(card, "Approve").rsplit(":", 1)[1]))
        want = UNKNOWN_BUTTON
    audited = len(read_audit(r, 1000))
    assert await people.press(BOB, OPS["id"], card, button(card, "Approve")) == want
    record = RecordStore(r).load(deployment)
    assert record is not None
    assert record.state == ("awaiting_approval" if how == "forgotten" else "cancelled")
    assert queue(r).count == 0
    entries = read_audit(r, 1000)[audited:]
    assert [(e.who, e.result) for e in entries] == [("tg:1002", "refused")]


# -- secrets ------------------------------------------------------------------------


async def test_no_secret_reaches_a_chat_or_a_log(
    emulator: Emulator,
    users: Users,
    r: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Secrets planted where the bot can reach them: its token, the registry password in
    the workers' environment, an SSH private key the spec names (the webhook secret is
    test_serving's).
    Every hostile input, /status (which reads the key), /envs, /help and a deployment
    request run; no transcript (texts, earlier edits, button answers) and no log line
    holds any of them."""
    caplog.set_level(logging.DEBUG)
    registry_password = "Registry-Pa55word-planted"
    monkeypatch.setenv("GREENLIGHT_REGISTRY_PASSWORD", registry_password)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = tmp_path / "id_ed25519"
    key.write_private_key(str(key_path))
    key_text = key_path.read_text()
    key_body = "".join(key_text.splitlines()[1:-1])
    (tmp_path / "known_hosts").write_text("")
    ssh = {"key": str(key_path), "known_hosts": str(tmp_path / "known_hosts")}
    env = {"public_url": "http://127.0.0.1:9", "ssh": ssh}
    spec = parse_spec(
        {
            "app": "shop",
            "image": "registry.example.com/acme/shop",
            "environments": {
                "production": {
                    **env,
                    "hosts": [{"name": "h1", "address": "127.0.0.1", "port": free_port()}],
                },
            },
        }
    )
    settings = settings_for(emulator, GREENLIGHT_STATUS_TIMEOUT=1)
    specs = {"shop": spec, "ledger": make_spec("ledger")}
    # Sixty commands in a minute are over a group's 20 replies: pacing is not under test.
    await users.call("flood", count=0, pacing=False)
    async with running_bot(settings, users, r, specs):
        people = People(users)
        for case in CASES:
            await people.say_only(case.user, case.text, case.chat)
        for text in ("/status shop", "/envs", "/help", "/deploy shop v1.0.1"):
            await people.say_only(ADA, text, OPS)
        await handled(people)
        reply = await people.say(DANA, "/status shop", OPS)

        async def checked() -> bool:
            return bool((await people.card(OPS["id"], reply))["edits"])

        await until(checked, "the hosts' state")
        chats = [OPS, ELSEWHERE, CHANNEL] + [private(u) for u in (DANA, BOB, ADA, CARL, EVE, PROBE)]
        transcripts = [str(await people.messages(chat["id"])) for chat in chats]
    secrets = {
        "bot token": emulator.token,
        "bot token secret part": emulator.token.split(":", 1)[1],
        "registry password": registry_password,
        "ssh key": key_body[len(key_body) // 2 :][:48],  # the private part, not the header
    }
    logged = "\n".join(f"{rec.getMessage()} {rec.exc_text or ''}" for rec in caplog.records)
    assert len(logged) > 0 and sum(len(t) for t in transcripts) > 1000
    for name, secret in secrets.items():
        assert secret not in logged, name
        for transcript in transcripts:
            assert secret not in transcript, name


async def test_repeated_refusals_in_the_ops_chat_are_answered_once_a_minute(
    people: People, r: redis.Redis
) -> None:
    """A group gets about 20 replies a minute; a stranger repeating refused commands
    must not use them up. Each attempt is still audited; a private chat is always
    answered (its limit is the person's own)."""
    for text in ("/deploy shop v1.0.1", "/lock shop production x", "/status shop"):
        await people.say_only(EVE, text, OPS)
    for _ in range(2):
        await people.say_only(DANA, "/lock shop production mine", OPS)
    await handled(people)
    assert [m["text"] for m in await people.bot_messages(OPS["id"])] == [
        NOT_LISTED,
        "⛔ This needs the admin role; you have: deployer.",
    ]
    assert [(e.who, e.action, e.result) for e in read_audit(r)] == [
        ("tg:666", "deploy", "refused"),
        ("tg:666", "lock", "refused"),
        ("tg:666", "status", "refused"),
        ("tg:1001", "lock", "refused"),
        ("tg:1001", "lock", "refused"),
    ]
    for _ in range(2):
        assert (await people.say(EVE, "/deploy shop v1.0.1", private(EVE)))["text"] == NOT_LISTED
    assert_nothing_changed(r)
