"""Every word the bot sends: pure functions from typed values to HTML text.

Anything a person or a host supplied goes through `escape`; only this module writes
markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from aiogram.types import User

from bot.settings import Role
from deploy.status import EnvironmentStatus, HostStatus
from jobs.api import Answer, Target, TargetSummary
from jobs.records import WORDS, DeploymentRecord

COMMANDS: dict[str, tuple[str, str]] = {
    "deploy": ("deploy a version", "/deploy v1.0.1 · /deploy shop v1.0.1 staging"),
    "rollback": ("go back to the last good release, or to VERSION", "/rollback · /rollback v1.0.0"),
    "history": ("the last requests (N, default 10)", "/history · /history staging 5"),
    "lock": ("stop deployments until unlocked", "/lock production migrating the database"),
    "unlock": ("lift a lock", "/unlock production"),
    "cancel": ("stop the deployment in progress", "/cancel · /cancel staging"),
    "promote": ("let a deployment held after smoke go live", "/promote"),
    "status": ("what runs on each host, and what Greenlight is doing", "/status · /status staging"),
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
    "status": "/status [APP] [ENV]",
}


def person(user: User) -> str:
    name = f"@{user.username}" if user.username else user.full_name
    return escape(name)


def help_text() -> str:
    lines = ["<b>Greenlight</b> — APP may be left out with one app; ENV defaults to the spec's."]
    for name, (what, example) in COMMANDS.items():
        usage = USAGE.get(name, f"/{name}")
        lines.append(f"<code>{escape(usage)}</code> — {what}, e.g. <code>{escape(example)}</code>")
    return "\n".join(lines)


# A reason quotes what a person typed; Telegram refuses a message over 4096 characters,
# so a long argument must not turn a refusal into no answer at all.
MAX_REASON = 300


def clip(text: str, limit: int = MAX_REASON) -> str:
    """`text`, cut to `limit` characters with an ellipsis saying so."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def bad_arguments(command: str, problem: str) -> str:
    example = COMMANDS[command][1].split(" · ")[0]
    return (
        f"⚠️ {escape(clip(problem))}\nUsage: <code>{escape(USAGE[command])}</code>, "
        f"e.g. <code>{escape(example)}</code>"
    )


def whoami(user: User, roles: Iterable[Role]) -> str:
    names = ", ".join(sorted(r.value for r in roles)) or "none (not on the list)"
    return f"You are {person(user)}, id <code>{user.id}</code>. Roles: {names}."


def refused(reason: str) -> str:
    return f"⛔ {escape(clip(reason))}"


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


def status(summary: TargetSummary, hosts: EnvironmentStatus | None) -> str:
    """/status: what Redis knows at once, then the hosts' own word (None: still asking)."""
    lines = [f"📊 <b>{escape(summary.app)}/{escape(summary.env)}</b>"]
    current = summary.current
    if current is not None:
        phase = f", phase {escape(current.phase)}" if current.phase else ""
        lines.append(
            f"Now: {escape(current.kind)} of <code>{escape(current.version)}</code> "
            f"{escape(WORDS[current.state])}{phase} (<code>{escape(current.id)}</code>, "
            f"by {escape(current.requested_by)})"
        )
    else:
        lines.append("Now: nothing in progress")
    if summary.locked is not None:
        lock = summary.locked
        lines.append(f"🔒 locked by {escape(lock.who)}: {escape(lock.reason)}")
    live = summary.last_live
    lines.append(
        f"Last release recorded live: <code>{escape(live.version)}</code> "
        f"(<code>{escape(live.id)}</code>)"
        if live is not None
        else "Last release recorded live: none"
    )
    if hosts is None:
        lines.append("⏳ checking hosts…")
    else:
        lines += [_host_line(host) for host in hosts.hosts]
    return "\n".join(lines)


def status_failed(summary: TargetSummary, problem: str) -> str:
    """/status when the hosts could not be asked at all."""
    first = status(summary, None).rsplit("\n", 1)[0]
    return f"{first}\n⚠️ hosts not checked: {escape(problem)}"


def _host_line(host: HostStatus) -> str:
    if not host.reachable:
        return f"🔴 {escape(host.name)}: unreachable: {escape(host.error or 'no reason given')}"
    live = host.live
    what = (
        f"<code>{escape(live.version)}</code> live on {escape(live.color)}"
        if live is not None
        else "nothing live"
    )
    notes = []
    if host.lock:
        notes.append(f"locked: {escape(host.lock)}")
    if host.switch:
        notes.append(escape(host.switch))
    notes += [f"problem: {escape(p)}" for p in host.problems]
    mark = "⚠️" if notes else "🟢"
    extra = "".join(f"\n    {note}" for note in notes)
    return f"{mark} {escape(host.name)}: {what}, epoch {host.epoch}{extra}"
