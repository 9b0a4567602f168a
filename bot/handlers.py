"""The commands and the approval buttons. Each handler parses, calls the jobs API and
sends what `render` wrote; who may call it is the `role` flag, checked by `Access`.

The jobs API and Redis are synchronous, and a Redis restart makes a call retry for up
to about 30 s: each call runs in a thread (`asyncio.to_thread`), so the bot goes on
answering everyone else meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import redis
from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot import render, steering
from bot.access import MEMBER
from bot.arguments import Arguments, BadArguments, parse
from bot.buttons import Cards, Decide, Decision
from bot.cards import send_request_card
from bot.github.notes import ReleaseNotes
from bot.names import names_of, remember
from bot.progress import ProgressStore
from bot.settings import BotSettings, Role
from deploy.spec import Spec, SpecError, choose_app
from jobs import api
from jobs.records import RecordStore
from jobs.streams import AuditEntry, audit


async def _arguments(
    message: Message, command: CommandObject, specs: dict[str, Spec], redis: redis.Redis, who: str
) -> Arguments | None:
    """The parsed arguments, or None after telling the person (and the audit) why not."""
    try:
        return parse(command.command, command.args, specs)
    except BadArguments as exc:
        await asyncio.to_thread(
            audit,
            redis,
            AuditEntry(
                who=who,
                action=command.command,
                target=f"chat:{message.chat.id}",
                result="refused",
                reason=str(exc),
            ),
        )
        await message.answer(render.bad_arguments(command.command, str(exc)))
        return None


async def whoami(message: Message, settings: BotSettings) -> None:
    if message.from_user is not None:
        user = message.from_user
        chat = message.chat.id if message.chat.type != "private" else None
        await message.answer(render.whoami(user, settings.roles_of(user.id), chat))


async def help_(message: Message) -> None:
    await message.answer(render.help_text())


async def envs(message: Message, redis: redis.Redis, specs: dict[str, Spec]) -> None:
    await message.answer(render.targets(await asyncio.to_thread(api.targets, redis, specs)))


async def history(
    message: Message, command: CommandObject, redis: redis.Redis, specs: dict[str, Spec], who: str
) -> None:
    args = await _arguments(message, command, specs, redis, who)
    if args is not None:
        try:
            records = await asyncio.to_thread(
                api.history, redis, specs, app=args.app, env=args.env, last=args.count
            )
        except SpecError as exc:  # no default environment and none named
            await message.answer(render.refused(str(exc)))
            return
        people = [p for r in records for p in (r.requested_by, r.approved_by)]
        names = await asyncio.to_thread(names_of, redis, people)
        await message.answer(render.history(_where(specs, args), records, names))


async def deploy(
    message: Message,
    command: CommandObject,
    redis: redis.Redis,
    specs: dict[str, Spec],
    bot: Bot,
    releases: ReleaseNotes | None,
    who: str,
) -> None:
    args = await _arguments(message, command, specs, redis, who)
    if args is None or args.version is None or message.from_user is None:
        return
    await asyncio.to_thread(remember, redis, who, render.name(message.from_user))
    answer = await asyncio.to_thread(
        api.request_deployment,
        redis,
        specs,
        app=args.app,
        env=args.env,
        version=args.version,
        who=who,
    )
    store = RecordStore(redis)
    record = await asyncio.to_thread(store.load, answer.deployment) if answer.deployment else None
    if record is not None and answer.state == "awaiting_approval":
        notes = await releases.for_request(redis, specs, record) if releases else None
        requester = render.person(message.from_user)
        await send_request_card(bot, message.chat.id, redis, record, requester, notes)
    elif answer.accepted and answer.deployment:
        await message.answer(render.queued("deploy", answer.deployment))
    else:
        await message.answer(render.refused(answer.reason))


# The commands that steer one (app, environment): the jobs API call each makes.
Steer = Callable[[redis.Redis, dict[str, Spec], Arguments, str], api.Answer]
STEERING: dict[str, tuple[Role, Steer]] = {
    "rollback": (
        Role.deployer,
        lambda r, s, a, who: api.rollback(r, s, app=a.app, env=a.env, who=who, to=a.version),
    ),
    "cancel": (Role.deployer, lambda r, s, a, who: api.cancel(r, s, app=a.app, env=a.env, who=who)),
    "promote": (
        Role.approver,
        lambda r, s, a, who: api.promote(r, s, app=a.app, env=a.env, who=who),
    ),
    "lock": (
        Role.admin,
        lambda r, s, a, who: api.lock(r, s, app=a.app, env=a.env, who=who, reason=a.reason),
    ),
    # Only admins unlock, so lifting another admin's lock is allowed; the audit says so.
    "unlock": (
        Role.admin,
        lambda r, s, a, who: api.unlock(r, s, app=a.app, env=a.env, who=who, force=True),
    ),
}


async def steer(
    message: Message, command: CommandObject, redis: redis.Redis, specs: dict[str, Spec], who: str
) -> None:
    args = await _arguments(message, command, specs, redis, who)
    if args is not None:
        _, call = STEERING[command.command]
        answer = await asyncio.to_thread(call, redis, specs, args, who)
        await message.answer(render.answer(command.command, answer, _where(specs, args)))


async def status(
    message: Message,
    command: CommandObject,
    redis: redis.Redis,
    specs: dict[str, Spec],
    settings: BotSettings,
    who: str,
) -> None:
    """Answer at once with what Redis knows; the hosts' own word follows as an edit,
    from a task of its own, so a silent host keeps nobody waiting."""
    args = await _arguments(message, command, specs, redis, who)
    if args is None:
        return
    try:
        known = await asyncio.to_thread(api.summary, redis, specs, app=args.app, env=args.env)
    except SpecError as exc:  # no default environment and none named
        await message.answer(render.refused(str(exc)))
        return
    if known.current is not None:  # the person as the chat knows them (@dana)
        by = known.current.requested_by
        names = await asyncio.to_thread(names_of, redis, [by])
        current = known.current.model_copy(update={"requested_by": names.get(by, by)})
        known = known.model_copy(update={"current": current})
    sent = await message.answer(render.status(known, None))
    check = asyncio.create_task(_check_hosts(sent, known, specs, settings.status_timeout))
    _CHECKS.add(check)
    check.add_done_callback(_CHECKS.discard)


_CHECKS: set[asyncio.Task[None]] = set()  # running host checks, kept from the collector
EDIT_ATTEMPTS = 3


async def _check_hosts(
    sent: Message, known: api.TargetSummary, specs: dict[str, Spec], timeout: float
) -> None:
    try:
        # Each host is bounded by `timeout`; the outer bound is for the SSH layer's close.
        found = await asyncio.wait_for(
            api.hosts(specs, app=known.app, env=known.env, timeout=timeout), timeout + 5
        )
        text = render.status(known, found)
    except (TimeoutError, SpecError, OSError) as exc:
        text = render.status_failed(known, str(exc) or type(exc).__name__)
    for _ in range(EDIT_ATTEMPTS):
        try:
            await sent.edit_text(text)
            return
        except TelegramRetryAfter as exc:  # the chat's pace: wait as told, then edit
            await asyncio.sleep(exc.retry_after)
        except TelegramAPIError:  # deleted meanwhile, or not modified: nothing to do
            return


async def decide(
    query: CallbackQuery, callback_data: Decide, redis: redis.Redis, cards: Cards, who: str
) -> None:
    card = await asyncio.to_thread(cards.load, callback_data.request)
    if card is None:
        await _unknown_button(query, redis, who)
        return
    await asyncio.to_thread(remember, redis, who, render.name(query.from_user))
    if callback_data.action == Decision.approve:
        answer = await asyncio.to_thread(api.approve, redis, card.deployment, who)
    else:
        answer = await asyncio.to_thread(api.reject, redis, card.deployment, who)
    if not answer.accepted:
        await query.answer(answer.reason[:200], show_alert=True)
        return
    record = await asyncio.to_thread(RecordStore(redis).load, card.deployment)
    if record is not None and query.message is not None and isinstance(query.message, Message):
        decision = render.decided(callback_data.action, query.from_user)
        # Without reply_markup the edit drops the buttons: the card is decided. A card
        # that cannot be edited (deleted meanwhile) must not keep the press unanswered.
        with contextlib.suppress(TelegramAPIError):
            await query.message.edit_text(
                render.request_card(record, card.requester, decision, card.notes)
            )
        # The progress writer takes the card over from here (it may have painted first).
        await asyncio.to_thread(ProgressStore(redis).repaint, card.deployment)
    await query.answer(
        "Approved: queued." if callback_data.action == Decision.approve else "Rejected."
    )


async def unknown_button(query: CallbackQuery, redis: redis.Redis, who: str) -> None:
    await _unknown_button(query, redis, who)


async def _unknown_button(query: CallbackQuery, redis: redis.Redis, who: str) -> None:
    await asyncio.to_thread(
        audit,
        redis,
        AuditEntry(
            who=who,
            action="press",
            target=f"button:{(query.data or '')[:64]}",
            result="refused",
            reason="not a button Greenlight sent, or one it has forgotten",
        ),
    )
    await query.answer(render.unknown_button(), show_alert=True)


def _where(specs: dict[str, Spec], args: Arguments) -> str:
    """app/env as the API resolved it; only asked after the API accepted the names."""
    try:
        spec = choose_app(specs, args.app)
        return f"{spec.app}/{spec.environment(args.env).name}"
    except SpecError:
        return "?"


def build_router() -> Router:
    """The handlers, on a fresh router: each Dispatcher gets its own."""
    router = Router(name="greenlight")
    router.message.register(whoami, Command("whoami"))
    router.message.register(help_, Command("help", "start"), flags={"role": MEMBER})
    router.message.register(envs, Command("envs"), flags={"role": MEMBER})
    router.message.register(history, Command("history"), flags={"role": MEMBER})
    router.message.register(deploy, Command("deploy"), flags={"role": Role.deployer})
    router.message.register(status, Command("status"), flags={"role": MEMBER})
    for name, (role, _) in STEERING.items():
        router.message.register(steer, Command(name), flags={"role": role})
    router.callback_query.register(decide, Decide.filter(), flags={"role": Role.approver})
    steering.register(router)
    router.callback_query.register(unknown_button, F.data, flags={"role": Role.approver})
    return router
