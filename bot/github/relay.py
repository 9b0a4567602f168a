"""The queued webhook deliveries, carried out: through the jobs API, into the ops chat.

- A release or a CI build to deploy becomes a request (the jobs API checks it again,
  audits it, and applies the environment's policy). Where it awaits approval, the ops
  chat gets its card (release, author, notes, link; Approve and Reject), which becomes
  the progress message once decided. Where the policy is `approval: none` it is
  queued at once, and its progress message says where it came from and has Abort.
  A request the jobs API refuses is said in the ops chat with the reason.
- A release edited while its request waits: the card shows the new name and notes.
- A release deleted or unpublished while its request waits: the request is cancelled,
  and its card says why (no buttons).

Each delivery is handled once (`bot.consumer`); one read again after a restart finds
the request it made already, under the delivery's id, and does not ask twice.
"""

from __future__ import annotations

import asyncio
import logging
from html import escape

import redis
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from pydantic import BaseModel

from bot import render
from bot.buttons import decision_buttons
from bot.cards import send_request_card
from bot.consumer import StreamConsumer
from bot.github.events import Deploy, Edited, Withdrawn
from bot.github.intake import DELIVERIES_KEY, DELIVERY, Delivery
from bot.progress import ProgressStore
from deploy.spec import Spec
from jobs import api
from jobs.records import RecordStore

log = logging.getLogger("greenlight.bot.github")
DONE_KEY = "greenlight:github:done:{delivery}"  # the request a delivery made
RELEASE_KEY = "greenlight:github:release:{repository}:{release}"  # its waiting card
KEPT_DAYS = 30


class WaitingCard(BaseModel):
    deployment: str
    chat_id: int
    message_id: int
    handle: int
    requester: str


class Relay(StreamConsumer):
    stream = DELIVERIES_KEY
    group = "greenlight-github-relay"
    start_at = "0"  # deliveries queued before the first start are work too

    def __init__(
        self,
        bot: Bot,
        connection: redis.Redis,
        specs: dict[str, Spec],
        ops_chat: int,
        consumer: str = "bot",
    ) -> None:
        super().__init__(connection, consumer)
        self.bot = bot
        self.specs = specs
        self.ops_chat = ops_chat

    async def handle(self, entry: str, fields: dict[bytes, bytes]) -> None:
        raw = fields.get(b"delivery")
        if raw is None:
            return
        delivery = DELIVERY.validate_json(raw)
        work = delivery.work
        if isinstance(work, Deploy):
            await self._deploy(delivery, work)
        elif isinstance(work, Edited):
            await self._edited(work)
        elif isinstance(work, Withdrawn):
            await self._withdrawn(work)

    async def _deploy(self, delivery: Delivery, work: Deploy) -> None:
        done = DONE_KEY.format(delivery=delivery.id)
        made = await asyncio.to_thread(self.redis.get, done)
        if made is None:
            answer = await asyncio.to_thread(
                api.request_deployment,
                self.redis,
                self.specs,
                app=work.app,
                env=work.env,
                version=work.version,
                who=work.who,
                tag=work.tag,
                origin=work.origin,
            )
            if not answer.accepted or answer.deployment is None:
                await self._say(render.webhook_refused(work.origin, work.version, answer.reason))
                return
            await asyncio.to_thread(self.redis.set, done, answer.deployment, ex=KEPT_DAYS * 86_400)
            deployment = answer.deployment
        else:
            deployment = made.decode() if isinstance(made, bytes) else str(made)
        record = await asyncio.to_thread(RecordStore(self.redis).load, deployment)
        if record is None or record.state != "awaiting_approval":
            return  # queued at once: its progress message tells the rest
        view = await asyncio.to_thread(ProgressStore(self.redis).load, deployment)
        if view is not None and view.message_id is not None:
            return  # the card went out before a restart
        requester = escape(work.who)
        notes = render.origin_notes(work.origin)
        sent, handle = await send_request_card(
            self.bot, self.ops_chat, self.redis, record, requester, notes
        )
        if work.origin.release_id is not None:
            card = WaitingCard(
                deployment=deployment,
                chat_id=sent.chat.id,
                message_id=sent.message_id,
                handle=handle,
                requester=requester,
            )
            key = RELEASE_KEY.format(
                repository=work.origin.repository.lower(), release=work.origin.release_id
            )
            await asyncio.to_thread(
                self.redis.set, key, card.model_dump_json(), ex=KEPT_DAYS * 86_400
            )

    async def _waiting(self, repository: str, release: int | None) -> WaitingCard | None:
        if release is None:
            return None
        key = RELEASE_KEY.format(repository=repository.lower(), release=release)
        raw = await asyncio.to_thread(self.redis.get, key)
        return WaitingCard.model_validate_json(raw) if isinstance(raw, bytes | str) else None

    async def _edited(self, work: Edited) -> None:
        card = await self._waiting(work.origin.repository, work.origin.release_id)
        if card is None:
            log.info("github: %s edited; no request of it waits", work.origin.ref)
            return
        answer = await asyncio.to_thread(
            api.update_origin, self.redis, card.deployment, work.origin, work.who
        )
        if not answer.accepted:
            return  # decided meanwhile: what runs keeps what it had
        record = await asyncio.to_thread(RecordStore(self.redis).load, card.deployment)
        if record is None:
            return
        notes = render.origin_notes(work.origin)
        try:
            await self.bot.edit_message_text(
                render.request_card(record, card.requester, notes=notes),
                chat_id=card.chat_id,
                message_id=card.message_id,
                reply_markup=decision_buttons(card.handle),
            )
        except TelegramAPIError as exc:  # deleted in the chat, or the same text
            log.info("github: the card of %s was not edited: %s", card.deployment, exc)

    async def _withdrawn(self, work: Withdrawn) -> None:
        card = await self._waiting(work.repository, work.release_id)
        if card is None:
            log.info("github: release %s withdrawn; no request of it waits", work.release_id)
            return
        record = await asyncio.to_thread(RecordStore(self.redis).load, card.deployment)
        if record is None or record.state != "awaiting_approval":
            return  # only a waiting request is withdrawn; one that runs goes on
        # The progress consumer paints the card's end ("was cancelled … : why"), and
        # the buttons go with it.
        await asyncio.to_thread(
            api.cancel,
            self.redis,
            self.specs,
            app=record.app,
            env=record.env,
            who=work.who,
            deployment=card.deployment,
            reason=work.why,
        )

    async def _say(self, text: str) -> None:
        try:
            await self.bot.send_message(self.ops_chat, text)
        except TelegramAPIError as exc:
            log.warning("github: could not tell the ops chat: %s", exc)
