"""The progress message's buttons: Abort while a deployment runs, Promote and Abort at
the promotion gate, Roll back once it is live.

A button carries an action and a short handle naming the deployment in Redis, never a
command. A press is authorized again by `Access` (the handler's `role` flag), and the
jobs API is told which deployment the button was for: a button left on an older
message can never act on a newer deployment.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

import redis
from aiogram import F, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup

from bot import render
from bot.names import remember
from bot.settings import Role
from bot.view import ProgressView
from deploy.spec import Spec
from jobs import api
from jobs.records import RecordStore
from jobs.streams import AuditEntry, audit

HANDLE_KEY = "greenlight:bot:progress:handle:{handle}"
HANDLES_KEY = "greenlight:bot:progress:handles"
HANDLE_DAYS = 30


class Action(StrEnum):
    abort = "abort"
    promote = "promote"
    rollback = "rollback"


class Steer(CallbackData, prefix="gp"):
    action: Action
    handle: int


ROLES = {Action.abort: Role.deployer, Action.promote: Role.approver, Action.rollback: Role.deployer}
LABELS = {Action.abort: "🛑 Abort", Action.promote: "🚀 Promote", Action.rollback: "↩️ Roll back"}
DONE = {Action.abort: "Abort requested", Action.promote: "Promoted", Action.rollback: "Roll back"}


class Handles:
    """Short numbers for deployments, so a payload stays far below 64 bytes."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def create(self, deployment: str) -> int:
        handle = int(self.redis.incr(HANDLES_KEY))
        self.redis.set(HANDLE_KEY.format(handle=handle), deployment, ex=HANDLE_DAYS * 86_400)
        return handle

    def load(self, handle: int) -> str | None:
        raw = self.redis.get(HANDLE_KEY.format(handle=handle))
        return raw.decode() if isinstance(raw, bytes) else None


def actions(view: ProgressView) -> list[Action]:
    """What a person may do from the message now."""
    if view.finished is not None and not view.final:
        return []  # the engine is done; the request's last word is on its way
    if view.state in ("queued", "running"):
        return [Action.abort]
    if view.state == "awaiting_promotion":
        return [Action.promote, Action.abort]
    if view.state == "live" and view.kind == "deploy":
        return [Action.rollback]
    return []


def steering_buttons(view: ProgressView, handle: int) -> InlineKeyboardMarkup | None:
    found = actions(view)
    if not found:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=LABELS[action], callback_data=Steer(action=action, handle=handle).pack()
                )
                for action in found
            ]
        ]
    )


async def press(
    query: CallbackQuery,
    callback_data: Steer,
    redis: redis.Redis,
    specs: dict[str, Spec],
    who: str,
) -> None:
    deployment = await asyncio.to_thread(Handles(redis).load, callback_data.handle)
    record = await asyncio.to_thread(RecordStore(redis).load, deployment) if deployment else None
    if deployment is None or record is None:
        await asyncio.to_thread(
            audit,
            redis,
            AuditEntry(
                who=who,
                action=callback_data.action.value,
                target=f"button:{(query.data or '')[:64]}",
                result="refused",
                reason="not a button Greenlight sent, or one it has forgotten",
            ),
        )
        await query.answer(render.unknown_button(), show_alert=True)
        return
    await asyncio.to_thread(remember, redis, who, render.name(query.from_user))
    where = {"app": record.app, "env": record.env, "who": who, "deployment": deployment}
    if callback_data.action == Action.abort:
        answer = await asyncio.to_thread(api.cancel, redis, specs, **where)
    elif callback_data.action == Action.promote:
        answer = await asyncio.to_thread(api.promote, redis, specs, **where)
    else:
        answer = await asyncio.to_thread(api.rollback, redis, specs, **where)
    if not answer.accepted:
        await query.answer(answer.reason[:200], show_alert=True)
        return
    await query.answer(f"{DONE[callback_data.action]}: {answer.deployment}."[:200])


def register(router: Router) -> None:
    """The press handlers, one per action so each names the role it needs."""
    for action, role in ROLES.items():
        router.callback_query.register(
            press, Steer.filter(F.action == action), flags={"role": role}
        )
