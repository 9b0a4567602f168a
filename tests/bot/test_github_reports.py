"""What the bot tells GitHub and takes from it: a GitHub Deployment per run with its
statuses, GitHub being down (noted once, the deployment unaffected), and release notes
on the cards of deployments asked for in the chat. The running bot (`serve`), the Bot
API emulator, a private Redis and the GitHub stand-in; the worker's part of a
deployment is its record's transitions, as a worker makes them."""

from __future__ import annotations

import asyncio
from typing import Any

import redis

from bot import render
from bot.emulator import Emulator
from jobs import api
from jobs.lease import Lease
from jobs.records import DeploymentRecord, RecordStore
from jobs.streams import read_audit
from jobs.work import lease_holder
from tests.bot.chat import People, until
from tests.bot.conftest import Users
from tests.bot.running import DANA, OPS
from tests.bot.test_github_webhook import SPECS, Hook, card_of, hooked
from tests.github_standin import GitHubStandIn

REPO = "acme/shop"


def requested(r: redis.Redis, version: str, env: str = "staging") -> DeploymentRecord:
    answer = api.request_deployment(r, SPECS, app="shop", env=env, version=version, who="tg:1001")
    assert answer.accepted and answer.deployment, answer
    record = RecordStore(r).load(answer.deployment)
    assert record is not None
    return record


def worked(r: redis.Redis, record: DeploymentRecord, *ending: Any) -> None:
    """What a worker does to the record: running, then `ending`; the lease freed."""
    store = RecordStore(r)
    store.advance(record.id, "running", phase="prepare")
    for state in ending:
        store.advance(record.id, state)
    Lease(r, record.app, record.env).release(lease_holder(record))


async def reported(github: GitHubStandIn, record: DeploymentRecord, *states: str) -> Any:
    async def found() -> Any:
        try:
            deployment = github.deployment_for(REPO, greenlight_id=record.id)
        except AssertionError:
            return None
        got = github.statuses(REPO, deployment.id)
        return deployment if got == list(states) else None

    return await until(found, f"GitHub to show {record.id} as {states}")


async def test_each_run_is_a_github_deployment_in_progress_then_success_and_replaces_the_last(
    emulator: Emulator, users: Users, r: redis.Redis
) -> None:
    async with hooked(
        emulator, users, r, GREENLIGHT_LOG_URL="https://ci.example/d/{deployment}"
    ) as hook:
        first = requested(r, "v1.0.1")
        worked(r, first, "live")
        shown = await reported(hook.github, first, "in_progress", "success")
        assert (shown.ref, shown.environment) == ("v1.0.1", "staging")
        assert shown.payload == {"greenlight_id": first.id, "app": "shop", "version": "v1.0.1"}
        status = hook.github.repos[REPO].deployments[shown.id].statuses[-1]
        assert status.log_url == f"https://ci.example/d/{first.id}"
        assert status.environment_url == "http://10.0.0.1"

        second = requested(r, "v1.0.2")
        worked(r, second, "rolled_back")
        await reported(hook.github, second, "in_progress", "failure")

        third = requested(r, "v1.0.3")
        worked(r, third, "live")
        await reported(hook.github, third, "in_progress", "success")

        async def replaced() -> bool:
            return hook.github.statuses(REPO, shown.id) == ["in_progress", "success", "inactive"]

        await until(replaced, "the first deployment to be inactive")
        sent = [req for req in hook.github.requests if req.method == "POST"]
        assert all(req.headers["x-github-api-version"] == "2022-11-28" for req in sent)
        assert all(req.headers["authorization"] == "<redacted>" for req in sent)
        assert await hook.people.bot_messages(OPS["id"]) != []  # progress messages only
        assert not any("GitHub" in m["text"] for m in await hook.people.bot_messages(OPS["id"]))


async def test_github_down_never_holds_a_deployment_and_is_noted_once(
    emulator: Emulator, users: Users, r: redis.Redis
) -> None:
    async with hooked(emulator, users, r) as hook:
        await hook.github.down()
        record = requested(r, "v1.0.1")
        worked(r, record, "live")  # nothing waits for GitHub

        async def noted() -> Any:
            sent = await hook.people.bot_messages(OPS["id"])
            return next((m for m in sent if "GitHub did not take" in m["text"]), None)

        note = await until(noted, "the ops chat to hear GitHub is down")
        assert record.id in note["text"] and "The deployment is not affected" in note["text"]
        trail = [e for e in read_audit(r) if e.action == "github-report"]
        assert trail and all(e.deployment == record.id and e.result == "refused" for e in trail)
        stored = RecordStore(r).load(record.id)
        assert stored is not None and stored.state == "live"

        await hook.github.up()
        later = requested(r, "v1.0.2")
        worked(r, later, "live")
        await reported(hook.github, later, "in_progress", "success")
        await asyncio.sleep(0.3)
        notes = [m for m in await hook.people.bot_messages(OPS["id"]) if "GitHub" in m["text"]]
        assert len(notes) == 1


async def card_for(hook: Hook, version: str) -> dict[str, Any]:
    people: People = hook.people
    await people.say_only(DANA, f"/deploy shop {version}", OPS)
    return await card_of(people, f"deploy of {version} to shop/production")


async def test_a_chat_request_card_carries_the_release_notes_or_the_commits_since_live(
    emulator: Emulator, users: Users, r: redis.Redis
) -> None:
    async with hooked(emulator, users, r) as hook:
        hook.github.add_release(REPO, "v1.0.1", name="v1.0.1", body="* <b>Bold</b> move (#7)")
        card = await card_for(hook, "v1.0.1")
        assert "* <b>Bold</b> move (#7)" in card["text"]  # escaped: shown as written
        links = [e["url"] for e in card["entities"] if e["type"] == "text_link"]
        assert links == ["https://github.com/acme/shop/releases/tag/v1.0.1"]
        record = RecordStore(r).recent("shop", "production")[0]
        api.cancel(r, SPECS, app="shop", env="production", who="tg:1003")

        live = requested(r, "v1.0.0", env="production")
        api.approve(r, live.id, "tg:1002")
        worked(r, live, "live")
        hook.github.add_commits(
            REPO,
            "v1.0.0",
            "v1.0.2",
            [("a" * 40, "Fix the cart total\n\nLong story.", "rita"), ("b" * 40, "Faster", None)],
        )
        card = await card_for(hook, "v1.0.2")
        assert (
            "Changes since v1.0.0:\n• Fix the cart total (aaaaaaa)\n• Faster (bbbbbbb)"
            in card["text"]
        )
        assert record.id not in card["text"]


async def test_a_card_goes_without_notes_when_github_cannot_say(
    emulator: Emulator, users: Users, r: redis.Redis
) -> None:
    async with hooked(emulator, users, r) as hook:
        await hook.github.down()
        card = await card_for(hook, "v1.0.1")
        assert card["text"].endswith("awaits approval by someone else")
        assert "blockquote" not in str(card["entities"])


def test_long_notes_are_cut_to_telegram_limits_with_a_link_to_the_rest() -> None:
    notes = render.Notes(
        text="\n".join(f"* change {n} <script>" for n in range(2_000)),
        url="https://github.com/acme/shop/releases/tag/v1.0.1",
    )
    for limit, fits in ((render.CARD_NOTES, 1500), (render.ANNOUNCED_NOTES, 4096)):
        text = render.notes_excerpt(notes, limit)
        assert render.fits(text, fits)
        assert "&lt;script&gt;" in text and "<script>" not in text
        assert text.endswith('">the rest on GitHub</a>')
    one_line = render.notes_excerpt(render.Notes(text="x" * 10_000), render.CARD_NOTES)
    assert render.fits(one_line, 1000) and one_line.endswith("(notes cut)")
