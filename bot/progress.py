"""Live progress: one message per deployment in the ops chat, edited in place as the
workers' events arrive on `greenlight:events`.

The consumer reads the stream with a consumer group. Each event is folded into the
deployment's view (`bot.view`), and the view, the "needs painting" mark and the
stream acknowledgement are written in one Redis transaction: a restarted bot re-reads
only what it had not acknowledged, and an event is never applied twice. Painting is
separate and paced (`bot.pace`): a burst of events becomes one edit showing the
latest view, and a view stays marked until the chat shows its last change, so the
final state is never dropped (a 429 only delays it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import redis
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from pydantic import ValidationError

from bot import metrics, render
from bot.consumer import StreamConsumer
from bot.names import names_of
from bot.pace import CountSends, Pace
from bot.steering import Handles, steering_buttons
from bot.view import SHOWN, ProgressView, apply, later, new_view
from deploy.events import EVENTS, DeployFinished, Metrics, RequestChanged
from jobs.records import DeploymentRecord, RecordStore, watched
from jobs.streams import EVENTS_KEY

log = logging.getLogger(__name__)

GROUP = "greenlight-bot"
VIEW_KEY = "greenlight:bot:progress:{deployment}"
DIRTY_KEY = "greenlight:bot:progress:dirty"  # deployments whose message is behind
KEPT_DAYS = 30
IDLE_MS = 250  # longest read block: how soon a stop or a repaint mark is noticed


class Outcomes(Protocol):
    """Told once per deployment when it finished (notifications hang here)."""

    async def finished(
        self, record: DeploymentRecord, event: DeployFinished, metrics: list[Metrics]
    ) -> None: ...


class NoOutcomes:
    async def finished(
        self, record: DeploymentRecord, event: DeployFinished, metrics: list[Metrics]
    ) -> None:
        return None


class ProgressStore:
    """The views in Redis, and the handles progress buttons carry."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def load(self, deployment: str) -> ProgressView | None:
        raw = self.redis.get(VIEW_KEY.format(deployment=deployment))
        return ProgressView.model_validate_json(raw) if isinstance(raw, bytes | str) else None

    def update(
        self,
        deployment: str,
        change: Callable[[ProgressView | None], ProgressView | None],
        also: Callable[[Any, ProgressView | None], None] = lambda pipe, view: None,
    ) -> ProgressView | None:
        """Read, change and write a view atomically (WATCH); `also` adds commands to
        the same transaction (a stream acknowledgement, the dirty mark)."""
        key = VIEW_KEY.format(deployment=deployment)

        def step(raw: bytes | str | None, pipe: Any) -> ProgressView | None:
            view = change(ProgressView.model_validate_json(raw) if raw else None)
            if view is not None:
                pipe.set(key, view.model_dump_json(), ex=KEPT_DAYS * 86_400)
            also(pipe, view)
            return view

        return watched(self.redis, key, step)

    def adopt(self, deployment: str, chat_id: int, message_id: int) -> None:
        """The approval card `message_id` becomes the deployment's progress message."""

        def change(view: ProgressView | None) -> ProgressView:
            view = view or new_view(deployment, RecordStore(self.redis).load(deployment))
            if view.message_id is None:  # a message posted already stays the one
                view.chat_id, view.message_id, view.shown = chat_id, message_id, -1
            return view

        self.update(deployment, change, lambda pipe, view: _mark(pipe, view))

    def repaint(self, deployment: str) -> None:
        """Someone else edited the message (the card's decision): paint it again."""

        def change(view: ProgressView | None) -> ProgressView | None:
            if view is not None:
                view.shown = -1
            return view

        self.update(deployment, change, lambda pipe, view: _mark(pipe, view))


def _mark(pipe: Any, view: ProgressView | None) -> None:
    if view is not None and view.speaks and view.shown < view.changes:
        pipe.sadd(DIRTY_KEY, view.deployment)


class Progress(StreamConsumer):
    """Consumes the event stream and keeps each deployment's message up to date.

    `start` runs it as a task beside the bot's polling; `stop` ends it between two
    steps, so a message sent is always recorded. `consumer` names this bot in the
    group: a restarted bot with the same name first re-reads what it had not
    acknowledged.
    """

    stream = EVENTS_KEY
    group = GROUP
    batch = 100

    def __init__(
        self,
        bot: Bot,
        connection: redis.Redis,
        chat_id: int,
        outcomes: Outcomes | None = None,
        *,
        consumer: str = "bot",
    ) -> None:
        super().__init__(connection, consumer)
        self.bot = bot
        self.chat_id = chat_id
        self.outcomes: Outcomes = outcomes or NoOutcomes()
        self.store = ProgressStore(connection)
        self.pace = Pace()
        self.backlog = metrics.Backlog(connection, EVENTS_KEY, GROUP)
        bot.session.middleware(CountSends(self.pace))

    async def run(self) -> None:
        # Unlike the base loop, painting runs between reads: a read blocks no longer
        # than the next paint the chat's pace allows.
        backlog = True  # our own entries read but not acknowledged before a restart
        wait_ms = IDLE_MS
        while not self._stopping.is_set():
            try:
                entries = await asyncio.to_thread(
                    self._read, "0" if backlog else ">", None if backlog else wait_ms
                )
                backlog = backlog and bool(entries)
                for entry, fields in entries:
                    await asyncio.to_thread(self._consume, entry, fields.get(b"event", b""))
                await asyncio.to_thread(self.backlog.measure)
                wait_ms = await self._paint_due()
            except redis.RedisError as exc:  # Redis restarting: try again shortly
                log.warning("progress: %s", exc)
                await asyncio.sleep(1)
                if "NOGROUP" in str(exc):  # a Redis that came back without the stream
                    await asyncio.to_thread(self._ensure_group)
            except Exception:  # a bug must not end progress for every later deployment
                log.exception("progress: unexpected error; going on")
                await asyncio.sleep(1)

    # -- consuming --------------------------------------------------------------------

    def _consume(self, entry: str, raw: bytes) -> None:
        try:
            event = EVENTS.validate_json(raw)
        except ValidationError:
            log.warning("progress: entry %s is not an event; skipped", entry)
            self.redis.xack(EVENTS_KEY, GROUP, entry)
            return
        metrics.event_read(event.at)
        if not isinstance(event, SHOWN):
            self.redis.xack(EVENTS_KEY, GROUP, entry)
            return
        record = None
        if isinstance(event, RequestChanged) or not self.redis.exists(
            VIEW_KEY.format(deployment=event.deployment)
        ):
            record = RecordStore(self.redis).load(event.deployment)
        people = [record.requested_by, record.approved_by] if record else []
        names = names_of(self.redis, [*people, getattr(event, "by", None)])

        def change(view: ProgressView | None) -> ProgressView:
            view = view or new_view(event.deployment, record)
            view.names |= names
            if later(entry, view.last_entry):  # else: applied before a restart
                view.last_entry = entry
                if apply(view, event, record):
                    view.changes += 1
            return view

        def also(pipe: Any, view: ProgressView | None) -> None:
            _mark(pipe, view)
            pipe.xack(EVENTS_KEY, GROUP, entry)

        try:
            self.store.update(event.deployment, change, also)
        except redis.RedisError:
            raise
        except Exception:  # one event the view cannot take must not block all after it
            log.exception("progress: entry %s skipped", entry)
            self.redis.xack(EVENTS_KEY, GROUP, entry)

    # -- painting ---------------------------------------------------------------------

    async def _paint_due(self) -> int:
        """Paint every view whose chat may take an edit now; how long (ms) until the
        next one may, for the next read's block."""
        members: Any = await asyncio.to_thread(self.redis.smembers, DIRTY_KEY)
        soonest = float(IDLE_MS)
        for deployment in sorted(_text(m) for m in members):
            if self._stopping.is_set():
                break
            view = await asyncio.to_thread(self.store.load, deployment)
            if view is None or not view.speaks or view.shown >= view.changes:
                await asyncio.to_thread(self._settle, deployment)
                if view is not None and view.finished and not view.outcome_reported:
                    await self._report(deployment)  # painted, then stopped before this
                continue
            wait = self.pace.wait(view.chat_id or self.chat_id)
            if wait > 0:
                soonest = min(soonest, wait * 1000)
                continue
            # Shielded: a stop or a cancel must not split a send from its recording.
            await asyncio.shield(self._paint(view))
        return max(int(soonest), 10)

    async def _paint(self, view: ProgressView) -> None:
        chat = view.chat_id or self.chat_id
        if view.handle is None and steering_buttons(view, 0) is not None:
            view.handle = await asyncio.to_thread(Handles(self.redis).create, view.deployment)
        text = render.progress(view)
        markup = steering_buttons(view, view.handle or 0)
        message_id = view.message_id
        try:
            if message_id is None:
                sent = await self.bot.send_message(chat, text, reply_markup=markup)
                message_id = sent.message_id
            else:
                await self.bot.edit_message_text(
                    text, chat_id=chat, message_id=message_id, reply_markup=markup
                )
        except TelegramRetryAfter as exc:
            self.pace.hold(chat, exc.retry_after)
            return  # still marked: the latest rendering goes when Telegram allows
        except TelegramBadRequest as exc:
            if "message to edit not found" in exc.message:
                message_id = None  # deleted in the chat: the next paint posts a new one
            elif "message is not modified" not in exc.message:
                log.warning("progress: %s: %s", view.deployment, exc.message)
                if message_id is None:  # the chat refuses new messages: not every loop
                    self.pace.hold(chat, 30.0)
        except (TelegramNetworkError, TelegramServerError) as exc:
            log.warning("progress: %s: %s", view.deployment, exc)
            self.pace.hold(chat, 1.0)
            return
        await asyncio.to_thread(self._painted, view, chat, message_id)
        await self._report(view.deployment)

    def _painted(self, painted: ProgressView, chat: int, message_id: int | None) -> None:
        def change(view: ProgressView | None) -> ProgressView | None:
            if view is None:
                return None
            view.chat_id, view.message_id = chat, message_id
            view.handle = view.handle or painted.handle
            view.shown = painted.changes if message_id is not None else -1
            return view

        def also(pipe: Any, view: ProgressView | None) -> None:
            if view is not None and view.shown >= view.changes:
                pipe.srem(DIRTY_KEY, view.deployment)

        self.store.update(painted.deployment, change, also)

    def _settle(self, deployment: str) -> None:
        def also(pipe: Any, view: ProgressView | None) -> None:
            if view is None or not view.speaks or view.shown >= view.changes:
                pipe.srem(DIRTY_KEY, deployment)

        self.store.update(deployment, lambda view: view, also)

    async def _report(self, deployment: str) -> None:
        """Once the chat shows a finished deployment: tell `outcomes`, exactly once. The
        mark is written first, so a restart never repeats a notification."""
        claimed: list[ProgressView] = []

        def claim(view: ProgressView | None) -> ProgressView | None:
            claimed.clear()
            if (
                view is not None
                and view.finished is not None
                and not view.outcome_reported
                and view.shown >= view.changes
            ):
                view.outcome_reported = True
                claimed.append(view)
            return view

        await asyncio.to_thread(self.store.update, deployment, claim)
        if not claimed:
            return
        view = claimed[0]
        record = await asyncio.to_thread(RecordStore(self.redis).load, deployment)
        if record is None or view.finished is None:
            return
        # The people as the chat knows them (@bob), not as the jobs API does (tg:1002).
        named = record.model_copy(
            update={
                "requested_by": view.names.get(record.requested_by, record.requested_by),
                "approved_by": view.names.get(record.approved_by or "", record.approved_by),
            }
        )
        try:
            await self.outcomes.finished(named, view.finished, view.metrics)
        except Exception:  # a notification's failure must not stop progress
            log.exception("progress: the outcome hook failed for %s", deployment)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
