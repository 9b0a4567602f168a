"""The end of a deployment, told to the people who need it.

A release that went live is announced in the public channel; anything else (a
failure, an automatic rollback) goes to the ops chat and the log chat with the
failing phase, host, exit status, output tail and container log (a .txt document
when long); a rollback someone asked for says where production went back to; a
stability window that ran comes back to the ops chat as a chart.

Nothing secret leaves: the record and the event are scrubbed before anything is
rendered, of the values the bot knows (its token, the registry password) and of the
shapes secrets take in logs (`password=...`, credentials in URLs, bearer tokens).
Telegram's refusals and flood limits are handled here and never raised: a
deployment's end must not stop the event consumer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import TypeVar

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.types import BufferedInputFile, Message
from pydantic import BaseModel

from bot import chart, render
from bot.github.notes import ReleaseNotes
from bot.settings import BotSettings
from deploy.events import DeployFinished, Metrics, Redactor
from deploy.settings import EngineSettings
from deploy.spec import Spec
from jobs.records import DeploymentRecord

log = logging.getLogger(__name__)
ATTEMPTS = 3  # one send and two retries after a 429
LONGEST_WAIT = 60.0  # seconds; Telegram's group limit never asks for more

M = TypeVar("M", bound=BaseModel)
ChatId = int | str


# Secrets by their shape, for those the bot cannot know by value (an app's database
# password in its container log): the name stays, the value goes.
_ASSIGNED = re.compile(
    r"(?i)\b([\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)[\w.-]*"
    r"\"?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@")
_AUTHORIZATION = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_BOT_TOKEN = re.compile(r"\b[0-9]{5,}:[A-Za-z0-9_-]{20,}")


class Scrubber(Redactor):
    """The engine's Redactor (known secret values), then secret-looking assignments."""

    def __call__(self, text: str) -> str:
        text = super().__call__(text)
        text = _ASSIGNED.sub(r"\1***", text)
        text = _URL_CREDENTIALS.sub(r"\1***@", text)
        text = _AUTHORIZATION.sub(r"\1 ***", text)
        return _BOT_TOKEN.sub("***", text)

    def model(self, value: M) -> M:
        """A copy of the model with every string in it scrubbed."""
        return type(value).model_validate(self.deep(value.model_dump()))


class Notifier:
    """Implements Outcomes with a Bot; chats from the settings (the log chat and the
    channel are optional)."""

    def __init__(
        self,
        bot: Bot,
        settings: BotSettings,
        secrets: Iterable[str] = (),
        notes: ReleaseNotes | None = None,
        specs: dict[str, Spec] | None = None,
    ) -> None:
        self.bot = bot
        self.notes = notes
        self.specs = specs or {}
        self.ops_chat = settings.ops_chat
        self.log_chat = settings.log_chat if settings.log_chat != settings.ops_chat else None
        self.channel = settings.channel
        token = settings.token.get_secret_value()
        registry = EngineSettings().registry_password
        known = [token, token.partition(":")[2], *secrets]
        for github in (settings.github_secret, settings.github_token):
            if github is not None:
                known.append(github.get_secret_value())
        if registry is not None:
            known.append(registry.get_secret_value())
        self.scrub = Scrubber(known)

    async def finished(
        self, record: DeploymentRecord, event: DeployFinished, metrics: list[Metrics]
    ) -> None:
        """Tell the chats how the deployment ended; never raises."""
        try:
            record = self.scrub.model(record)
            event = self.scrub.model(event)
        except Exception:  # nothing unscrubbed may go out
            log.exception("could not scrub the end of a deployment; nothing sent")
            return
        try:
            if event.outcome == "live" and record.kind == "deploy":
                await self._announce(record, event)
            elif event.outcome == "live":  # a rollback someone asked for: ops and log chats
                took = _took(record, event)
                for chat in self._ops_and_log():
                    await self._send_text(chat, render.went_back(record, took))
            else:
                await self._report_failure(record, event)
        except Exception:  # a notification lost is bad; the event consumer stopped is worse
            log.exception("telling the end of %s failed", record.id)
        if metrics:
            try:
                await self._send_chart(record, metrics)
            except Exception:
                log.exception("the stability chart of %s failed", record.id)

    def _ops_and_log(self) -> list[int]:
        return [self.ops_chat] + ([self.log_chat] if self.log_chat is not None else [])

    async def _announce(self, record: DeploymentRecord, event: DeployFinished) -> None:
        if self.channel is not None:
            notes = await self._notes(record)
            text = render.announcement(record, _took(record, event), notes)
            await self._send_text(self.channel, text)

    async def _notes(self, record: DeploymentRecord) -> render.Notes | None:
        """The release's notes: its own (a release started it), or GitHub's."""
        if self.notes is not None:
            found = await self.notes.for_finished(self.specs, record)
        else:
            found = render.origin_notes(record.origin)
        return self.scrub.model(found) if found is not None else None

    async def _report_failure(self, record: DeploymentRecord, event: DeployFinished) -> None:
        back_on = None
        if event.outcome == "rolled_back" and record.deployment is not None:
            back_on = record.deployment.previous_version
        chats = self._ops_and_log()
        text = render.failure(record, event, back_on)
        if render.fits_inline(event) and render.fits(text, render.TEXT_LIMIT):
            for chat in chats:
                await self._send_text(chat, text)
            return
        caption = _caption(record, event, back_on)
        report = render.failure_report(record, event).encode()
        document: BufferedInputFile | str = BufferedInputFile(report, _file_name(record.id))
        for chat in chats:
            sent = await self._deliver(
                partial(
                    self.bot.send_document,
                    chat,
                    document,
                    caption=caption,
                    parse_mode=ParseMode.HTML,
                )
            )
            # Telegram keeps an upload: the next chat gets the same file by its id.
            if sent is not None and sent.document is not None:
                document = sent.document.file_id

    async def _send_chart(self, record: DeploymentRecord, metrics: list[Metrics]) -> None:
        title = f"{record.app}/{record.env} {render.version_of(record)}: stability window"
        png = await chart.draw(metrics, title)
        photo = BufferedInputFile(png, _file_name(record.id, "png"))
        caption = render.chart_caption(record, metrics)
        send = partial(self.bot.send_photo, self.ops_chat, photo, caption=caption)
        await self._deliver(partial(send, parse_mode=ParseMode.HTML))

    async def _send_text(self, chat: ChatId, text: str) -> Message | None:
        return await self._deliver(
            partial(self.bot.send_message, chat, text, parse_mode=ParseMode.HTML)
        )

    async def _deliver(self, send: Callable[[], Awaitable[Message]]) -> Message | None:
        """Send, waiting out a 429 (twice at most); None when Telegram would not take it."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await send()
            except TelegramRetryAfter as exc:
                if attempt == ATTEMPTS:
                    log.warning("Telegram still asks to wait after %d attempts; dropped", attempt)
                    return None
                await asyncio.sleep(min(float(exc.retry_after), LONGEST_WAIT))
            except TelegramAPIError as exc:
                log.warning("Telegram refused a notification: %s", exc.message)
                return None
        return None


def _caption(record: DeploymentRecord, event: DeployFinished, back_on: str | None) -> str:
    """The failure with as much of the tails as a caption holds."""
    for lines in (3, 1, 0):
        caption = render.failure(record, event, back_on, lines, attached=True)
        if render.fits(caption, render.CAPTION_LIMIT):
            return caption
    return render.failure(record, event, back_on, 0, attached=True, brief=True)


def _took(record: DeploymentRecord, event: DeployFinished) -> float | None:
    """From the moment it started running to the end; the phases' sum without it."""
    started = next((t.at for t in record.transitions if t.state == "running"), None)
    if started is not None:
        return event.at - started.timestamp()
    return sum(event.phases.values()) if event.phases else None


def _file_name(deployment: str, suffix: str = "txt") -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", deployment) + f".{suffix}"
