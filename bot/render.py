"""Every word the bot sends: pure functions from typed values to HTML text.

Anything a person or a host supplied goes through `escape`; only this module writes
markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from aiogram.types import User
from pydantic import BaseModel

from bot.settings import Role
from bot.view import ProgressView
from deploy.events import DeployFinished, Metrics
from deploy.pipeline import UNPLANNED
from deploy.status import EnvironmentStatus, HostStatus
from jobs.api import Answer, Target, TargetSummary
from jobs.records import WORDS, DeploymentRecord, Origin


class Notes(BaseModel):
    """A release's notes as told in the chat: its text, and where to read the rest."""

    text: str
    url: str = ""


def origin_notes(found: Origin | None) -> Notes | None:
    """The notes a release brought with it (its body), where a release asked."""
    if found is None or not found.notes:
        return None
    return Notes(text=found.notes, url=found.url)


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


def whoami(user: User, roles: Iterable[Role], chat: int | None = None) -> str:
    """Who asked, with the id GREENLIGHT_PEOPLE wants; in a group, the group's id too
    (GREENLIGHT_OPS_CHAT, GREENLIGHT_LOG_CHAT)."""
    names = ", ".join(sorted(r.value for r in roles)) or "none (not on the list)"
    text = f"You are {person(user)}, id <code>{user.id}</code>. Roles: {names}."
    return f"{text}\nThis chat's id: <code>{chat}</code>." if chat is not None else text


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


def request_card(
    record: DeploymentRecord, requester: str, decision: str = "", notes: Notes | None = None
) -> str:
    """The approval card: what, where, who asked (and the release or CI run that did),
    the release notes; and, once decided, who decided."""
    lines = [
        f"🚦 <b>{escape(record.kind)}</b> of <code>{escape(record.version)}</code> to "
        f"<b>{escape(record.app)}/{escape(record.env)}</b>",
        f"requested by {requester} · <code>{escape(record.id)}</code>",
    ]
    if record.origin is not None:
        lines.append(origin(record.origin))
    if notes is not None and notes.text.strip():
        lines.append(notes_excerpt(notes, CARD_NOTES))
    lines.append(decision or "awaits approval by someone else")
    return "\n".join(lines)


CARD_NOTES = 900  # characters of release notes on a card (it has a link to the rest)
ANNOUNCED_NOTES = 2_500  # in the channel's announcement
NOTES_LINES = 25


def webhook_refused(found: Origin, version: str, reason: str) -> str:
    """A release or CI run asked for a deployment the jobs API refused."""
    return (
        f"⛔ {origin(found)} asked for <code>{escape(_clip(version))}</code>; refused: "
        f"{escape(clip(reason))}"
    )


def github_down(record: DeploymentRecord, problem: str) -> str:
    """GitHub would not take a deployment's report; the deployment itself goes on."""
    return (
        f"⚠️ GitHub did not take the report of <code>{escape(record.id)}</code>: "
        f"{escape(clip(problem))}\nThe deployment is not affected; GitHub may show it late."
    )


def origin(found: Origin) -> str:
    """The release or CI run that asked for a deployment, linked."""
    title = escape(_clip(found.title or found.ref, 120))
    link = (
        f'<a href="{escape(found.url, quote=True)}">{title}</a>' if _linkable(found.url) else title
    )
    by = f" by {escape(_clip(found.author, 64))}" if found.author else ""
    if found.kind == "release":
        return f"🏷 release {link} of {escape(found.repository)}{by}"
    return (
        f"🏗 CI run {link} of {escape(found.repository)} at <code>{escape(found.ref[:7])}</code>{by}"
    )


def notes_excerpt(notes: Notes, limit: int) -> str:
    """The notes' first lines up to `limit` characters, as a quote, with a link to the
    whole when they were cut (or when there is a page to read them on)."""
    lines = [line.rstrip() for line in notes.text.strip().splitlines()]
    kept: list[str] = []
    used = 0
    for line in lines[:NOTES_LINES]:
        if used + len(line) > limit:
            if not kept:  # one long line: cut it
                kept.append(line[: max(0, limit - 1)] + "…")
            break
        kept.append(line)
        used += len(line) + 1
    cut = len(kept) < len(lines) or kept[-1].endswith("…")
    quote = f"<blockquote>{escape(chr(10).join(kept))}</blockquote>"
    if _linkable(notes.url):
        words = "the rest on GitHub" if cut else "on GitHub"
        quote += f'\n<a href="{escape(notes.url, quote=True)}">{words}</a>'
    elif cut:
        quote += "\n(notes cut)"
    return quote


def _linkable(url: str) -> bool:
    return url.startswith(("https://", "http://")) and len(url) <= 2_000 and " " not in url


def decided(action: str, by: User) -> str:
    """The card's last line once someone pressed a button."""
    verdict = "✅ approved" if action == "approve" else "❌ rejected"
    return f"{verdict} by {person(by)}"


def history(
    where: str, records: list[DeploymentRecord], names: dict[str, str] | None = None
) -> str:
    """The last requests; people by the names the chat knows them by, where known."""
    if not records:
        return f"No requests to {escape(where)} yet."
    names = names or {}
    lines = [f"<b>{escape(where)}</b>, newest first:"]
    for r in records:
        approved = (
            f", approved by {escape(names.get(r.approved_by, r.approved_by))}"
            if r.approved_by
            else ""
        )
        lines.append(
            f"<code>{escape(r.id)}</code> {escape(r.kind)} {escape(r.version)} "
            f"{escape(WORDS[r.state])} (by {escape(names.get(r.requested_by, r.requested_by))}"
            f"{approved})"
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


# Notifications: a deployment's end, in the ops and log chats and the public channel.
# Telegram's limits, in UTF-16 code units of the text as sent (markup included, so a
# text that fits here fits after Telegram strips the tags).
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
EXCERPT_LINES = 20  # of output and of container log shown whole in a chat message
EXCERPT_WIDTH = 300  # characters of one such line


OUTCOMES: dict[str, str] = dict(WORDS.items())


def fits(text: str, limit: int) -> bool:
    return len(text.encode("utf-16-le")) // 2 <= limit


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    whole = max(0, round(seconds))
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _people(record: DeploymentRecord, verb: str = "deployed") -> str:
    approved = (
        f"approved by {escape(record.approved_by)}" if record.approved_by else "no approval needed"
    )
    return f"{verb} by {escape(record.requested_by)}, {approved}"


def announcement(record: DeploymentRecord, took: float | None, notes: Notes | None = None) -> str:
    """The public channel's line for a release that went live, with its notes."""
    text = (
        f"🚀 <b>{escape(record.app)}</b> <code>{escape(record.version)}</code> is live in "
        f"<b>{escape(record.env)}</b>\n"
        f"deployment <code>{escape(record.id)}</code>\n"
        f"{_people(record)} · took {duration(took)}"
    )
    if record.origin is not None:
        text += f"\n{origin(record.origin)}"
    if notes is not None and notes.text.strip():
        text += f"\n{notes_excerpt(notes, ANNOUNCED_NOTES)}"
    return text


def version_of(record: DeploymentRecord) -> str:
    """The version as planned: a rollback learns its version when the engine plans it."""
    if record.version == UNPLANNED and record.deployment is not None:
        return record.deployment.version
    return record.version


def _version(record: DeploymentRecord) -> str:
    version = version_of(record)
    return f"<code>{escape(version)}</code>" if version != UNPLANNED else "the last good release"


def went_back(record: DeploymentRecord, took: float | None) -> str:
    """The ops chat's line for a rollback someone asked for, once it is done."""
    requested = f"requested by {escape(record.requested_by)}"
    approved = f", approved by {escape(record.approved_by)}" if record.approved_by else ""
    return (
        f"↩️ <b>{escape(record.app)}/{escape(record.env)}</b> went back to {_version(record)}\n"
        f"rollback <code>{escape(record.id)}</code> · {requested}{approved} · "
        f"took {duration(took)}"
    )


def failure(
    record: DeploymentRecord,
    event: DeployFinished,
    back_on: str | None,
    lines: int = EXCERPT_LINES,
    attached: bool = False,
    brief: bool = False,
) -> str:
    """A failed deployment (or one rolled back): what failed where, with the exit status,
    and the last `lines` of output and of container log. `attached` says the whole
    report follows as a document; `brief` leaves out the notes and shortens the
    message and command, for a caption that would not fit otherwise."""
    width = 100 if brief else EXCERPT_WIDTH
    outcome = OUTCOMES.get(event.outcome, event.outcome)
    text = [
        f"❌ <b>{escape(record.app)}/{escape(record.env)}</b>: {escape(record.kind)} of "
        f"{_version(record)} {escape(outcome)}",
        f"<code>{escape(record.id)}</code> · {_people(record, 'requested')}",
    ]
    report = event.failure
    if report is None:
        text.append(escape(clip(event.message, width)))
    else:
        where = f" on <b>{escape(report.host)}</b>" if report.host else ""
        step = f" ({escape(report.step)})" if report.step else ""
        text.append(f"failed in <b>{escape(report.phase)}</b>{where}{step}")
        text.append(escape(clip(report.message, width)))
        if report.exit_status is not None or report.command:
            status = "none" if report.exit_status is None else str(report.exit_status)
            command = (
                f": <code>{escape(clip(report.command, width))}</code>" if report.command else ""
            )
            text.append(f"exit status <b>{status}</b>{command}")
    if back_on:
        text.append(f"Traffic is back on <code>{escape(back_on)}</code>.")
    if not brief:
        text += [f"• {escape(clip(note, width))}" for note in event.notes[:3]]
    if report is not None and lines:
        text += _excerpt("output", report.output, lines, width)
        text += _excerpt("container log", report.container_logs, lines, width)
    if attached:
        text.append("The whole report is attached.")
    return "\n".join(text)


def _excerpt(name: str, found: list[str], lines: int, width: int) -> list[str]:
    if not found:
        return []
    tail = found[-lines:]
    shown = f"last {len(tail)} of {len(found)} lines" if len(found) > len(tail) else "all"
    body = "\n".join(escape(clip(line, width)) for line in tail)
    return [f"<b>{name}</b> ({shown}):", f"<pre>{body}</pre>"]


def fits_inline(event: DeployFinished) -> bool:
    """Whether the failure's details can be shown whole in a chat message."""
    report = event.failure
    if report is None:
        return True
    shown = [*report.output, *report.container_logs]
    return (
        len(report.output) <= EXCERPT_LINES
        and len(report.container_logs) <= EXCERPT_LINES
        and all(len(line) <= EXCERPT_WIDTH for line in shown)
        and len(report.message) <= EXCERPT_WIDTH
    )


def failure_report(record: DeploymentRecord, event: DeployFinished) -> str:
    """The whole story as plain text, for the attached document."""
    text = [
        f"{record.kind} of {version_of(record)} to {record.app}/{record.env}",
        f"deployment {record.id}",
        f"requested by {record.requested_by}, approved by {record.approved_by or 'nobody'}",
        f"outcome: {event.outcome} (exit code {event.exit_code})",
        event.message,
        "",
    ]
    if event.failure is not None:
        text += event.failure.lines()
        if event.failure.step:
            text.append(f"step: {event.failure.step}")
        text.append("")
    if event.notes:
        text += ["notes:", *(f"  {note}" for note in event.notes), ""]
    if event.phases:
        text += ["phases:", *(f"  {name}: {s:.1f}s" for name, s in event.phases.items())]
    return "\n".join(text) + "\n"


def chart_caption(record: DeploymentRecord, metrics: list[Metrics]) -> str:
    requests = sum(m.figures.requests for m in metrics)
    errors = sum(m.figures.errors for m in metrics)
    worst = max((m.figures.p95_ms for m in metrics), default=0.0)
    return (
        f"📈 Stability window of <code>{escape(record.id)}</code>: {len(metrics)} intervals, "
        f"{requests} probes, {errors} errors, worst p95 {worst:.0f} ms"
    )


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
    elif view.origin is not None and view.kind == "deploy" and view.state != "rejected":
        people += " · started at once: no approval needed"
    lines = [
        f"🚀 <b>{escape(view.kind)}</b> of <code>{escape(_clip(view.version))}</code> to "
        f"<b>{escape(_clip(view.app))}/{escape(_clip(view.env))}</b>",
        f"{people} · <code>{escape(_clip(view.deployment))}</code>",
    ]
    if view.origin is not None:
        lines.append(origin(view.origin))
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
