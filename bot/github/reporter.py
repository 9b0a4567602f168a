"""Every deployment of a repository's app, reported back to GitHub as a Deployment.

A consumer group of its own on the event stream, beside the chat's: a deployment
queued gets a GitHub deployment (the tag or commit as ref, the environment, and
Greenlight's id in the payload); it goes `in_progress` when a worker starts it, and
ends `success` or `failure`, with a log URL (the progress message, or
GREENLIGHT_LOG_URL) and the environment's public URL. The deployment it replaced goes
`inactive`. A rollback that went live is a deployment of the version it went back to.

GitHub is never in a deployment's way: the workers do not wait for this consumer, and
a GitHub that stays down (the client retries and honours rate limits first) is noted
once per deployment in the ops chat and in the audit trail, and the report goes on
without it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

from bot import render
from bot.consumer import StreamConsumer
from bot.github.client import GitHubClient, GitHubError
from bot.progress import ProgressStore
from deploy.events import EVENTS, RequestChanged
from deploy.spec import Spec
from jobs.records import FINAL, DeploymentRecord, RecordStore
from jobs.streams import EVENTS_KEY, AuditEntry, audit

log = logging.getLogger("greenlight.bot.github")
RUN_KEY = "greenlight:github:deployment:{deployment}"  # hash: id, what was posted
LIVE_KEY = "greenlight:github:live:{app}:{env}"  # the GitHub deployment serving now
NOTED_KEY = "greenlight:github:noted:{deployment}"
KEPT_DAYS = 90


class Reporter(StreamConsumer):
    stream = EVENTS_KEY
    group = "greenlight-github"

    def __init__(
        self,
        bot: Bot,
        connection: redis.Redis,
        specs: dict[str, Spec],
        client: GitHubClient,
        ops_chat: int,
        log_url: str | None = None,
        consumer: str = "bot",
    ) -> None:
        super().__init__(connection, consumer)
        self.bot = bot
        self.specs = specs
        self.client = client
        self.ops_chat = ops_chat
        self.log_url = log_url

    async def handle(self, entry: str, fields: dict[bytes, bytes]) -> None:
        raw = fields.get(b"event")
        if raw is None:
            return
        event = EVENTS.validate_json(raw)
        if not isinstance(event, RequestChanged):
            return
        spec = self.specs.get(event.app)
        if spec is None or spec.github is None:
            return
        record = await asyncio.to_thread(RecordStore(self.redis).load, event.deployment)
        if record is None:
            return
        repository = spec.github.repository
        try:
            if event.state == "queued" and record.kind == "deploy":
                await self._open(repository, spec, record)
            elif event.state == "running":
                await self._post(repository, spec, record, "in_progress")
            elif event.state in FINAL:
                await self._close(repository, spec, record, event.state)
        except GitHubError as exc:
            await self._note(record, str(exc))

    async def _open(self, repository: str, spec: Spec, record: DeploymentRecord) -> int:
        key = RUN_KEY.format(deployment=record.id)
        known = await asyncio.to_thread(self.redis.hget, key, "id")
        if known is not None:
            return int(known)
        ref = record.origin.ref if record.origin is not None else record.version
        verb = "rollback to" if record.kind == "rollback" else "deploy"
        github_id = await self.client.create_deployment(
            repository,
            ref=ref,
            environment=record.env,
            payload={"greenlight_id": record.id, "app": record.app, "version": record.version},
            description=f"Greenlight: {verb} {record.version} ({record.id})"[:140],
            production=record.env == "production",
        )
        await asyncio.to_thread(self._remember, key, {"id": github_id})
        return github_id

    async def _post(
        self, repository: str, spec: Spec, record: DeploymentRecord, state: Any
    ) -> None:
        key = RUN_KEY.format(deployment=record.id)
        run: dict[bytes, bytes] = await asyncio.to_thread(self.redis.hgetall, key)  # type: ignore[arg-type]
        if b"id" not in run or f"posted:{state}".encode() in run:
            return  # not opened (GitHub was down then), or told already
        await self.client.create_status(
            repository,
            int(run[b"id"]),
            state=state,
            log_url=await self._log_url(record),
            environment_url=spec.environment(record.env).public_url,
            description=_description(record, state),
        )
        await asyncio.to_thread(self._remember, key, {f"posted:{state}": 1})

    async def _close(
        self, repository: str, spec: Spec, record: DeploymentRecord, state: str
    ) -> None:
        if state == "live" and record.kind == "rollback":
            await self._open(repository, spec, record)  # the version it went back to
        outcome = "success" if state == "live" else "failure"
        await self._post(repository, spec, record, outcome)
        if state != "live":
            return
        live = LIVE_KEY.format(app=record.app, env=record.env)
        run = await asyncio.to_thread(self.redis.hget, RUN_KEY.format(deployment=record.id), "id")
        before = await asyncio.to_thread(self.redis.getset, live, run) if run else None
        if before is not None and before != run:
            await self.client.create_status(
                repository,
                int(before),
                state="inactive",
                log_url=await self._log_url(record),
                environment_url=spec.environment(record.env).public_url,
                description=f"replaced by {record.version} ({record.id})"[:140],
            )

    def _remember(self, key: str, values: dict[str, Any]) -> None:
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping=values)
            pipe.expire(key, KEPT_DAYS * 86_400)
            pipe.execute()

    async def _log_url(self, record: DeploymentRecord) -> str | None:
        if self.log_url:
            return self.log_url.replace("{deployment}", record.id)
        view = await asyncio.to_thread(ProgressStore(self.redis).load, record.id)
        if view is None or view.message_id is None:
            return None
        return message_link(view.chat_id or self.ops_chat, view.message_id)

    async def _note(self, record: DeploymentRecord, problem: str) -> None:
        """GitHub would not take a report: said once per deployment, audited each time."""
        log.warning("github: %s: %s", record.id, problem)
        await asyncio.to_thread(
            audit,
            self.redis,
            AuditEntry(
                who="greenlight",
                action="github-report",
                target=f"{record.app}/{record.env}",
                deployment=record.id,
                result="refused",
                reason=problem[:500],
            ),
        )
        first = await asyncio.to_thread(
            self.redis.set, NOTED_KEY.format(deployment=record.id), 1, nx=True, ex=86_400
        )
        if first:
            try:
                await self.bot.send_message(self.ops_chat, render.github_down(record, problem))
            except TelegramAPIError as exc:
                log.warning("github: could not tell the ops chat: %s", exc)


def message_link(chat_id: int, message_id: int) -> str | None:
    """t.me's link to a message of a supergroup (ids -100…); others have none."""
    text = str(chat_id)
    if not text.startswith("-100"):
        return None
    return f"https://t.me/c/{text[4:]}/{message_id}"


def _description(record: DeploymentRecord, state: str) -> str:
    words = {
        "in_progress": f"{record.version} is deploying",
        "success": f"{record.version} is live",
        "failure": f"{record.version} {render.OUTCOMES.get(record.state, record.state)}",
    }
    return words.get(state, state)[:140]
