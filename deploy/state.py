"""Typed views of what a host records (see `deploy.commands.state` for the layout)."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from deploy.commands.state import SECTIONS
from deploy.errors import HostStateUnreadable
from deploy.spec import COLORS, Color

ColorStatus = Literal["staging", "running", "stopped", "removed", "failed"]
Verdict = Literal["good", "bad"]
STALE_AFTER = 3600.0  # seconds; a lock this old is reported as probably abandoned


# The first line of the proxy's upstream file, written by `proxy.upstream_text`.
_MARKER = re.compile(
    r"^# greenlight color=(?P<color>blue|green) version=(?P<version>\S+) "
    r"deployment=(?P<deployment>\S+) epoch=(?P<epoch>\d+)$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Live:
    """What the upstream file says takes traffic."""

    color: Color
    version: str
    deployment: str
    epoch: int


def parse_live(text: str) -> Live | None:
    match = _MARKER.search(text)
    if match is None:
        return None
    return Live(
        match["color"],  # type: ignore[arg-type]
        match["version"],
        match["deployment"],
        int(match["epoch"]),
    )


def now() -> datetime:
    return datetime.now(UTC)


class ColorRecord(BaseModel):
    color: Color
    version: str
    digest: str
    image: str
    port: int
    deployment: str
    status: ColorStatus
    updated_at: datetime = Field(default_factory=now)
    # A previous release kept running for a fast rollback; the host stops it then.
    warm_until: datetime | None = None
    # Every image of a release of several (name -> ref@digest); empty for one image.
    images: dict[str, str] = Field(default_factory=dict)


class LockInfo(BaseModel):
    deployment: str
    owner: str
    started_at: datetime
    machine: str = ""
    pid: int | None = None

    def age(self) -> float:
        return (now() - self.started_at).total_seconds()

    def orphaned(self) -> bool:
        """Its owner ran on this machine and that process is gone: nobody will release it."""
        if self.pid is None or self.machine != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self, env: str) -> str:
        minutes = self.age() / 60
        text = (
            f"held by {self.owner} for {self.deployment} since "
            f"{self.started_at:%Y-%m-%d %H:%M:%S} UTC ({minutes:.0f} min ago)"
        )
        unlock = f"`greenlight break-lock --env {env} --yes`"
        if self.orphaned():
            text += (
                f"; ORPHANED: its process {self.pid} on {self.machine} is gone; "
                f"break it with {unlock}"
            )
        elif self.age() > STALE_AFTER:
            where = f" (process {self.pid} on {self.machine})" if self.pid else ""
            text += f"; it looks stale{where}: if nothing is deploying, {unlock}"
        return text


class SwitchRecord(BaseModel):
    """A switch that started and was not yet confirmed: what the proxy served before."""

    deployment: str
    epoch: int
    to_color: Color
    to_version: str
    before: str  # the upstream file as it was before the first write
    started_at: datetime = Field(default_factory=now)

    @property
    def live_before(self) -> Live | None:
        return parse_live(self.before)


class VerdictRecord(BaseModel):
    version: str
    verdict: Verdict
    reason: str = ""
    deployment: str = ""
    at: datetime = Field(default_factory=now)


class HistoryEntry(BaseModel):
    deployment: str
    kind: Literal["deploy", "rollback"] = "deploy"
    version: str
    digest: str = ""
    image: str = ""
    images: dict[str, str] = Field(default_factory=dict)
    who: str
    result: str
    from_version: str | None = None
    started_at: datetime
    finished_at: datetime
    phases: dict[str, float] = Field(default_factory=dict)
    failure: str | None = None
    skipped_tests: bool = False


class HostState(BaseModel):
    host: str
    epoch: int = 0
    live: Live | None = None
    upstream: str = ""
    colors: dict[Color, ColorRecord] = Field(default_factory=dict)
    lock: LockInfo | None = None
    switch: SwitchRecord | None = None
    bad: set[str] = Field(default_factory=set)
    releases: list[HistoryEntry] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)

    @property
    def live_record(self) -> ColorRecord | None:
        return self.colors.get(self.live.color) if self.live else None

    def idle_color(self) -> Color:
        """The colour a new version goes to: the one not taking traffic."""
        if self.live is None:
            return "blue"
        return other(self.live.color)

    def is_bad(self, version: str) -> bool:
        return version in self.bad

    def last_good_release(self) -> HistoryEntry | None:
        """The newest release that went live here before the live one and is not bad."""
        live = self.live.version if self.live else None
        for entry in reversed(self.releases):
            if entry.version != live and not self.is_bad(entry.version):
                return entry
        return None


def other(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


def parse_host_state(host: str, text: str) -> HostState:
    """Parse the sectioned answer of `state.read` (or `state.acquire_lock`).

    Every section must be there, in order, up to `@@end`: an answer cut anywhere is
    HostStateUnreadable, never a state with defaults (an upstream section lost would
    make the live colour look idle).
    """
    sections = _sections(host, text)
    state = HostState(host=host)
    epoch = "".join(sections["epoch"]).strip()
    if epoch:
        if not epoch.isdigit():
            raise HostStateUnreadable(host, f"epoch file is corrupt: {epoch[:40]!r}")
        state.epoch = int(epoch)
    state.upstream = "".join(f"{line}\n" for line in sections["upstream"])
    state.live = parse_live(state.upstream)
    for color in COLORS:
        record = _model(host, ColorRecord, sections[color], f"{color} record")
        if record is not None:
            state.colors[color] = record
    if state.live is not None and state.live_record is None:
        raise HostStateUnreadable(
            host, f"the proxy points at {state.live.color} but no {state.live.color} record exists"
        )
    state.lock = _model(host, LockInfo, sections["lock"], "lock owner")
    state.switch = _model(host, SwitchRecord, sections["switch"], "switch record")
    state.bad = {line.strip() for line in sections["bad"] if line.strip()}
    for name in ("releases", "history"):
        for line in sections[name]:
            if not line.strip():
                continue
            try:
                getattr(state, name).append(HistoryEntry.model_validate_json(line))
            except ValidationError:
                state.problems.append(f"history line is unreadable: {line[:80]!r}")
    return state


def _sections(host: str, text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    expected = iter(SECTIONS)
    current: str | None = None
    for line in text.splitlines():
        name = line[2:].strip() if line.startswith("@@") else None
        if name in SECTIONS:
            want = next(expected, None)
            if name != want:
                raise HostStateUnreadable(host, f"section {want} missing before {name}")
            current = name
            sections[name] = []
        elif name is not None and current is None:
            continue  # the lock's own answer (@@acquired / @@held) comes first
        elif current is not None:
            sections[current].append(line)
    missing = [name for name in SECTIONS if name not in sections]
    if missing:
        raise HostStateUnreadable(host, f"the answer ends before {missing[0]}")
    return sections


M = TypeVar("M", bound=BaseModel)


def _model(host: str, model: type[M], lines: list[str], what: str) -> M | None:
    text = "\n".join(lines).strip()
    if not text:
        return None
    try:
        return model.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        raise HostStateUnreadable(host, f"{what} is corrupt: {text[:80]!r}") from None


def parse_facts(lines: list[str]) -> dict[str, str]:
    """`key=value` lines (preflight facts, backup measurements)."""
    facts: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            facts[key.strip()] = value.strip()
    return facts


def parse_compose_status(lines: list[str]) -> list[dict[str, object]]:
    """`docker compose ps --format json` prints one object per line (older releases: one
    array)."""
    states: list[dict[str, object]] = []
    for line in lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        items = parsed if isinstance(parsed, list) else [parsed]
        states += [item for item in items if isinstance(item, dict)]
    return states
