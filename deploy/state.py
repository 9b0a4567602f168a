"""Typed views of what a host records (see `deploy.commands.state` for the layout)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from deploy.commands.proxy import Live, parse_live
from deploy.spec import COLORS, Color

ColorStatus = Literal["staging", "running", "stopped", "removed", "failed"]
Verdict = Literal["good", "bad"]
STALE_AFTER = 3600.0  # seconds; a lock this old is reported as probably abandoned


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


class LockInfo(BaseModel):
    deployment: str
    owner: str
    started_at: datetime
    machine: str = ""

    def age(self) -> float:
        return (now() - self.started_at).total_seconds()

    def describe(self) -> str:
        minutes = self.age() / 60
        text = (
            f"held by {self.owner} for {self.deployment} since "
            f"{self.started_at:%Y-%m-%d %H:%M:%S} UTC ({minutes:.0f} min ago)"
        )
        if self.age() > STALE_AFTER:
            text += "; it looks stale: if nothing is deploying, `greenlight unlock --yes`"
        return text


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
    who: str
    result: str
    from_version: str | None = None
    started_at: datetime
    finished_at: datetime
    phases: dict[str, float] = Field(default_factory=dict)
    failure: str | None = None


class HostState(BaseModel):
    host: str
    epoch: int = 0
    live: Live | None = None
    upstream: str = ""
    colors: dict[Color, ColorRecord] = Field(default_factory=dict)
    lock: LockInfo | None = None
    verdicts: dict[str, VerdictRecord] = Field(default_factory=dict)
    history: list[HistoryEntry] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)

    @property
    def live_record(self) -> ColorRecord | None:
        return self.colors.get(self.live.color) if self.live else None

    def idle_color(self) -> Color:
        """The colour a new version goes to: the one not taking traffic."""
        if self.live is None:
            return "blue"
        return "green" if self.live.color == "blue" else "blue"

    def is_bad(self, version: str) -> bool:
        record = self.verdicts.get(version)
        return record is not None and record.verdict == "bad"


def parse_host_state(host: str, lines: list[str]) -> HostState:
    """Parse the sectioned output of `state.read` (or `state.acquire_lock`)."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines:
        if line.startswith("@@"):
            current = line[2:].strip()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
    state = HostState(host=host)
    epoch = "".join(sections.get("epoch", [])).strip()
    if epoch:
        if epoch.isdigit():
            state.epoch = int(epoch)
        else:
            state.problems.append(f"epoch file is corrupt: {epoch[:40]!r}")
    state.upstream = "\n".join(sections.get("upstream", []))
    if state.upstream:
        state.upstream += "\n"
    state.live = parse_live(state.upstream)
    for color in COLORS:
        record = _model(ColorRecord, sections.get(color, []), state.problems, f"{color} record")
        if record is not None:
            state.colors[color] = record
    state.lock = _model(LockInfo, sections.get("lock", []), state.problems, "lock owner")
    if "lock" in sections and sections["lock"] == [] and "@@held" in lines:
        state.problems.append("lock is held but names no owner")
    for line in sections.get("verdicts", []):
        verdict = _model(VerdictRecord, [line], state.problems, "verdict")
        if verdict is not None:
            state.verdicts[verdict.version] = verdict
    for line in sections.get("history", []):
        entry = _model(HistoryEntry, [line], state.problems, "history line")
        if entry is not None:
            state.history.append(entry)
    return state


M = TypeVar("M", bound=BaseModel)


def _model(model: type[M], lines: list[str], problems: list[str], what: str) -> M | None:
    text = "\n".join(lines).strip()
    if not text:
        return None
    try:
        return model.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        problems.append(f"{what} is unreadable: {text[:80]!r}")
        return None
