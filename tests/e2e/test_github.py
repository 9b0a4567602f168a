"""A GitHub release deploys for real: the signed webhook into the running bot (`serve`,
its HTTP server and consumers), the card in the ops chat on the Bot API emulator,
Approve, a real `greenlight worker` on the test bed's hosts under load, the
announcement with the release notes in the channel, and the deployment's statuses on
the GitHub stand-in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from bot.emulator import running_emulator
from bot.settings import BotSettings
from deploy.spec import load_specs
from jobs.records import RecordStore
from tests.bot.chat import Message, People
from tests.bot.conftest import Users
from tests.bot.running import serving
from tests.e2e.conftest import FAST, Bed, assert_served
from tests.e2e.test_bot_progress import within
from tests.e2e.test_workers import REDIS_URL, fresh_redis, running_workers
from tests.github_payloads import deliver, release, workflow_run
from tests.github_standin import GitHubStandIn, running_github
from tests.redis_server import free_port

__all__ = ["fresh_redis"]  # the fixture, used by name
OPS = {"id": -100500, "type": "supergroup", "title": "ops"}
CHANNEL = {"id": -100900, "type": "channel", "title": "news"}
BOB = {"id": 1002, "first_name": "Bob", "username": "bob"}
SECRET = "e2e-hook-secret"
TOKEN = "ghp_e2eTokenValue0123456789abcdef"
REPO = "greenlight/sample"
SHA = "4f1e2d3c5b6a798877665544332211ffeeddccbb"  # the bed's sha-4f1e2d3 build
DEADLINE = 180.0


@dataclass
class Stack:
    people: People
    github: GitHubStandIn
    base: str
    session: aiohttp.ClientSession

    async def publish(self, tag: str, release_id: int, body: str) -> None:
        payload = release(REPO, tag, release_id=release_id, body=body, name=f"Sample {tag}")
        status, answer = await deliver(self.session, self.base, "release", payload, SECRET)
        assert status == 202, answer

    async def message(self, chat: int, *words: str) -> Message:
        async def found() -> Message | None:
            for m in await self.people.bot_messages(chat):
                if all(w in m["text"] for w in words):
                    return m
            return None

        return await within(found, f"a message with {words}")  # type: ignore[no-any-return]


@pytest.fixture
async def stack(bed: Bed, fresh_redis: redis.Redis) -> AsyncIterator[tuple[Stack, Path]]:
    spec = bed.spec(**FAST, github={"repository": REPO, "release": {"environment": "production"}})
    bootstrap = bed.greenlight("deploy", "v1.0.0", config=spec)
    assert bootstrap.code == 0, bootstrap.output
    specs = load_specs(spec)
    async with (
        running_emulator() as emulator,
        running_github(TOKEN) as github,
        aiohttp.ClientSession() as session,
    ):
        github.add_repo(REPO)
        users = Users(emulator, session)
        for chat in (OPS, CHANNEL):
            await users.call("chat", **chat)
        settings = bot_settings(
            emulator.token,
            emulator.url,
            github.url,
            GREENLIGHT_CHANNEL=CHANNEL["id"],
            GREENLIGHT_PEOPLE={"1002": ["approver"]},
        )
        async with serving(settings, specs, fresh_redis) as base:
            with running_workers(spec):
                yield Stack(People(users), github, base, session), spec


def bot_settings(token: str, telegram: str, github: str, **more: Any) -> BotSettings:
    """The bot on the emulator, the bed's Redis, a free HTTP port and the GitHub stand-in."""
    return BotSettings(
        GREENLIGHT_BOT_TOKEN=token,
        GREENLIGHT_TELEGRAM_API=telegram,
        GREENLIGHT_OPS_CHAT=OPS["id"],
        GREENLIGHT_HTTP_PORT=free_port(),
        GREENLIGHT_GITHUB_SECRET=SECRET,
        GREENLIGHT_GITHUB_TOKEN=TOKEN,
        GREENLIGHT_GITHUB_API=github,
        REDIS_URL=REDIS_URL,
        **more,
    )


async def approve(stack: Stack, tag: str) -> str:
    card = await stack.message(
        OPS["id"], f"deploy of {tag} to sample/production", "awaits approval"
    )
    data = next(
        b["callback_data"] for row in card["buttons"] for b in row if "Approve" in b["text"]
    )
    assert await stack.people.press(BOB, OPS["id"], card, data) == "Approved: queued."
    return card["text"].splitlines()[1].split(" · ")[-1]  # the deployment id


async def test_a_published_release_is_approved_goes_live_is_announced_and_reported(
    bed: Bed, stack: tuple[Stack, Path], fresh_redis: redis.Redis
) -> None:
    chat, spec = stack
    with bed.load("h1") as load:
        await chat.publish("v1.0.1", 11, "## Highlights\n* Quicker pages (#12)")
        good = await approve(chat, "v1.0.1")
        await chat.message(OPS["id"], good, "✅ is live")
        announced = await chat.message(CHANNEL["id"], "v1.0.1", "is live in production")

        await chat.publish("v1.0.2", 12, "* A health check that fails")
        bad = await approve(chat, "v1.0.2")
        await chat.message(OPS["id"], bad, "failed before the switch")
    assert_served(load.stop())
    assert bed.live(spec) == {"h1": "v1.0.1"}

    assert "🏷 release Sample v1.0.1 of greenlight/sample by rita" in announced["text"]
    assert "* Quicker pages (#12)" in announced["text"]
    assert "approved by @bob" in announced["text"]
    released = chat.github.deployment_for(REPO, greenlight_id=good)
    failed = chat.github.deployment_for(REPO, greenlight_id=bad)
    assert (released.ref, released.environment) == ("v1.0.1", "production")
    assert chat.github.statuses(REPO, released.id) == ["in_progress", "success"]
    assert chat.github.statuses(REPO, failed.id) == ["in_progress", "failure"]
    last = released.statuses[-1]
    public = load_specs(spec)["sample"].environment("production").public_url
    assert last.environment_url == public
    assert last.log_url is not None and last.log_url.startswith("https://t.me/c/500/")
    records = {r.id: r.state for r in RecordStore(fresh_redis).recent("sample", "production")}
    assert records == {good: "live", bad: "not_switched"}
    # Only the release that went live was announced.
    assert len(await chat.people.bot_messages(CHANNEL["id"])) == 1


CI_SPEC = {
    "repository": REPO,
    "ci": {"workflow": "build.yml", "branch": "main", "environment": "staging"},
}


async def test_a_successful_ci_run_deploys_its_commit_build_to_staging(
    bed: Bed, fresh_redis: redis.Redis
) -> None:
    spec = bed.spec(envs=("staging",), **FAST, github=CI_SPEC)
    specs = load_specs(spec)
    async with (
        running_emulator() as emulator,
        running_github(TOKEN) as github,
        aiohttp.ClientSession() as session,
    ):
        github.add_repo(REPO)
        users = Users(emulator, session)
        await users.call("chat", **OPS)
        settings = bot_settings(emulator.token, emulator.url, github.url)
        async with serving(settings, specs, fresh_redis) as base:
            with running_workers(spec):
                run = workflow_run(REPO, sha=SHA, started="2026-12-01T09:58:07Z")
                status, answer = await deliver(session, base, "workflow_run", run, SECRET)
                assert status == 202, answer
                chat = Stack(People(users), github, base, session)
                done = await chat.message(OPS["id"], "to sample/staging", "✅ is live")
    assert "🏗 CI run Build of greenlight/sample at 4f1e2d3 by carla" in done["text"]
    version = "v0.0.0-ci.20261201095807.4f1e2d3"
    status = json.loads(bed.greenlight("status", "--json", "--env", "staging", config=spec).output)
    assert {h["name"]: h["live"]["version"] for h in status["hosts"]} == {"h1": version}
    record = RecordStore(fresh_redis).recent("sample", "staging")[0]
    assert record.deployment is not None and record.deployment.tag == "sha-4f1e2d3"
    deployment = github.deployment_for(REPO, greenlight_id=record.id)
    assert (deployment.ref, deployment.environment) == (SHA, "staging")
    assert github.statuses(REPO, deployment.id) == ["in_progress", "success"]
