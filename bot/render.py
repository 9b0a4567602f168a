"""Every word the bot sends: pure functions from typed values to HTML text.

Anything a person or a host supplied goes through `escape`; only this module writes
markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from aiogram.types import User

from bot.settings import Role
from bot.view import ProgressView
from jobs.api import Answer, Target
from jobs.records import WORDS, DeploymentRecord

COMMANDS: dict[str, tuple[str, str]] = {
    "deploy": ("deploy a version", "/deploy v1.0.1 · /deploy shop v1.0.1 staging"),
    "rollback": ("go back to the last good release, or to VERSION", "/rollback · /rollback v1.0.0"),
    "history": ("the last requests (N, default 10)", "/history · /history staging 5"),
    "lock": ("stop deployments until unlocked", "/lock production migrating the database"),
    "unlock": ("lift a lock", "/unlock production"),
    "cancel": ("stop the deployment in progress", "/cancel · /cancel staging"),
    "promote": ("let a deployment held after smoke go live", "/promote"),
    "envs": ("apps, environments and their policy", "/envs"),
    "whoami": ("your Telegram id and roles", "/whoami"),
    "help": ("this list", "/help"),
}
USAGE: dict[str, str] = {
    "deploy": "/deploy [APP] VERSION [ENV]",
    "rollback": "/rollback [APP] [ENV] [VERSION]",
    "history": "/history [APP] [ENV] [N]",
    "lock": "/lock [APP] [ENV] REASON",
    "unlock": "/unlock [APP] [ENV]",
    "cancel": "/cancel [APP] [ENV]",
    "promote": "/promote [APP] [ENV]",
}


def person(user: User) -> str:
    return escape(name(user))


def name(user: User) -> str:
    """How a person is called in the chat, unescaped (stored, escaped when rendered)."""
    return f"@{user.username}" if user.username else user.full_name


def help_text() -> str:
    lines = ["<b>Greenlight</b> — APP may be left out with one app; ENV defaults to the spec's."]
    for name, (what, example) in COMMANDS.items():
        usage = USAGE.get(name, f"/{name}")
        lines.append(f"<code>{escape(usage)}</code> — {what}, e.g. <code>{escape(example)}</code>")
    return "\n".join(lines)


def bad_arguments(command: str, problem: str) -> str:
    example = COMMANDS[command][1].split(" · ")[0]
    return (
        f"⚠️ {escape(problem)}\nUsage: <code>{escape(USAGE[command])}</code>, "
        f"e.g. <code>{escape(example)}</code>"
    )


def whoami(user: User, roles: Iterable[Role]) -> str:
    names = ", ".join(sorted(r.value for r in roles)) or "none (not on the list)"
    return f"You are {person(user)}, id <code>{user.id}</code>. Roles: {names}."


def refused(reason: str) -> str:
    return f"⛔ {escape(reason)}"


DONE = {"lock": "locked", "unlock": "unlocked"}


def answer(action: str, answer: Answer, where: str) -> str:
    """The reply to a command the jobs API accepted or refused."""
    if not answer.accepted:
        return refused(answer.reason)
    action = DONE.get(action, action)
    subject = f"<code>{escape(answer.deployment)}</code>" if answer.deployment else escape(where)
    state = f" {escape(WORDS[answer.state])}" if answer.state else ""
    return f"✅ {escape(action)}: {subject}{state}."


def queued(kind: str, deployment: str) -> str:
    return f"✅ {escape(kind)} queued as <code>{escape(deployment)}</code>; no approval needed."


def request_card(record: DeploymentRecord, requester: str, decision: str = "") -> str:
    """The approval card: what, where, who asked; and, once decided, who decided."""
    text = (
        f"🚦 <b>{escape(record.kind)}</b> of <code>{escape(record.version)}</code> to "
        f"<b>{escape(record.app)}/{escape(record.env)}</b>\n"
        f"requested by {requester} · <code>{escape(record.id)}</code>"
    )
    return f"{text}\n{decision}" if decision else f"{text}\nawaits approval by someone else"


def decided(action: str, by: User) -> str:
    """The card's last line once someone pressed a button."""
    verdict = "✅ approved" if action == "approve" else "❌ rejected"
    return f"{verdict} by {person(by)}"


def history(where: str, records: list[DeploymentRecord]) -> str:
    if not records:
        return f"No requests to {escape(where)} yet."
    lines = [f"<b>{escape(where)}</b>, newest first:"]
    for r in records:
        approved = f", approved by {escape(r.approved_by)}" if r.approved_by else ""
        lines.append(
            f"<code>{escape(r.id)}</code> {escape(r.kind)} {escape(r.version)} "
            f"{escape(WORDS[r.state])} (by {escape(r.requested_by)}{approved})"
        )
    return "\n".join(lines)


def targets(found: list[Target]) -> str:
    lines = []
    for t in found:
        default = " (default)" if t.default else ""
        lock = f" 🔒 {escape(t.locked.who)}: {escape(t.locked.reason)}" if t.locked else ""
        busy = f" ⏳ <code>{escape(t.deploying)}</code>" if t.deploying else ""
        lines.append(
            f"<b>{escape(t.app)}/{escape(t.env)}</b>{default}: approval {t.approval}, "
            f"promote {t.promote}, hosts {escape(', '.join(t.hosts))}{lock}{busy}"
        )
    return "\n".join(lines) or "No apps configured."


def not_listed() -> str:
    return "⛔ You are not on Greenlight's list. Send /whoami privately to get your id."


def ops_chat_only() -> str:
    return "⛔ Commands work only in the ops chat."


def needs_role(role: Role, roles: Iterable[Role]) -> str:
    have = ", ".join(sorted(r.value for r in roles)) or "none"
    return f"⛔ This needs the {role.value} role; you have: {have}."


def unknown_button() -> str:
    return "This button is not one of Greenlight's."


# -- the progress message -------------------------------------------------------------

TEXT_LIMIT = 4096  # Telegram's, after entity parsing; the HTML source is never shorter
HOSTS_SHOWN = 30
PHASE_MARKS = {"pending": "▫️", "running": "⏳", "done": "✅", "failed": "❌"}
ENDINGS = {
    "live": "✅",
    "rolled_back": "↩️",
    "not_switched": "❌",
    "cancelled": "🛑",
    "rejected": "❌",
    "refused": "⛔",
    "recovered": "🩹",
    "unknown": "⚠️",
}


def progress(view: ProgressView) -> str:
    """A deployment's progress message: what, where, who; each phase; the hosts; the
    stability window's latest figures; and how it ended."""
    people = f"requested by {_who(view, view.requested_by)}"
    if view.approved_by:
        people += f" · approved by {_who(view, view.approved_by)}"
    lines = [
        f"🚀 <b>{escape(view.kind)}</b> of <code>{escape(_clip(view.version))}</code> to "
        f"<b>{escape(_clip(view.app))}/{escape(_clip(view.env))}</b>",
        f"{people} · <code>{escape(_clip(view.deployment))}</code>",
    ]
    if view.hosts:
        shown = ", ".join(_clip(h, 40) for h in view.hosts[:HOSTS_SHOWN])
        more = f" and {len(view.hosts) - HOSTS_SHOWN} more" if len(view.hosts) > HOSTS_SHOWN else ""
        lines.append(f"hosts: {escape(shown)}{more}")
    for phase in view.phases:
        took = f" {phase.seconds:.1f} s" if phase.seconds is not None else ""
        lines.append(f"{PHASE_MARKS[phase.state]} {escape(_clip(phase.name, 40))}{took}")
    if view.figures is not None:
        f = view.figures
        lines.append(
            f"📈 stability, interval {view.interval}: {f.requests} probes, {f.errors} errors "
            f"({f.error_rate:.2%}), p50 {f.p50_ms:.0f} ms, p95 {f.p95_ms:.0f} ms"
        )
    if view.failure:
        lines.append(f"⚠️ {escape(_clip(view.failure, 600))}")
    lines.append(_ending(view))
    # Every part is clipped, so even a hundred hosts and long names stay far below
    # TEXT_LIMIT; cutting the HTML here instead could split a tag.
    return "\n".join(lines)


def _ending(view: ProgressView) -> str:
    state = view.state if view.state in WORDS else "unknown"
    words = WORDS[state]
    note = f": {escape(_clip(view.note, 300))}" if view.note else ""
    if not view.final:
        return f"<i>{escape(words)}{note}</i>"
    by = f" by {_who(view, view.by)}" if view.by and view.by != "greenlight" else ""
    return f"{ENDINGS.get(view.state, '•')} <b>{escape(words)}</b>{by}{note}"


def _who(view: ProgressView, who: str | None) -> str:
    return escape(_clip(view.names.get(who or "", who or "?"), 64))


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
