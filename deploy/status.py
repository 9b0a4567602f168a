"""What runs where: each host's live colour, version, digest, lock and history, as a
typed report, and its text rendering (a pure function, like every renderer)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from pydantic import BaseModel, Field

from deploy.commands import state as state_commands
from deploy.commands.layout import layout_for
from deploy.errors import HostError
from deploy.executor import executor_for
from deploy.spec import Color, HostSpec, Spec
from deploy.state import ColorStatus, HistoryEntry, HostState, parse_host_state
from deploy.versions import version_key


class LiveView(BaseModel):
    color: Color
    version: str
    digest: str


class ColorView(BaseModel):
    version: str
    status: ColorStatus
    digest: str
    images: dict[str, str] = Field(default_factory=dict)
    warm_until: datetime | None = None


class HostStatus(BaseModel):
    name: str
    reachable: bool
    error: str | None = None
    epoch: int = 0
    live: LiveView | None = None
    colors: dict[Color, ColorView] = Field(default_factory=dict)
    lock: str | None = None
    switch: str | None = None
    bad_versions: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


class EnvironmentStatus(BaseModel):
    app: str
    env: str
    hosts: list[HostStatus]
    history: list[HistoryEntry]

    @property
    def all_reachable(self) -> bool:
        return all(h.reachable for h in self.hosts)


async def collect_status(
    spec: Spec, env_name: str | None, history: int = 10, host_timeout: float | None = None
) -> EnvironmentStatus:
    """Every host's state, read at once. With `host_timeout`, a host that has not
    answered by then is reported unreachable with that reason, and the others still
    count (the bot's /status must not wait on one silent host)."""
    env = spec.environment(env_name)
    layout = layout_for(spec, env)

    async def one(host: HostSpec) -> tuple[HostStatus, HostState | None]:
        executor = executor_for(host, env.ssh)
        try:
            async with asyncio.timeout(host_timeout):
                result = await executor.run(state_commands.read(layout, history))
            state = parse_host_state(host.name, result.output)
        except HostError as exc:
            return HostStatus(name=host.name, reachable=False, error=exc.reason), None
        except TimeoutError:
            silent = f"no answer within {host_timeout:g} s"
            return HostStatus(name=host.name, reachable=False, error=silent), None
        finally:
            await executor.close()
        return describe_host(state, env.name), state

    results = await asyncio.gather(*(one(h) for h in env.hosts))
    entries: dict[str, HistoryEntry] = {}
    for _, state in results:
        for entry in state.history if state else []:
            entries.setdefault(entry.deployment, entry)
    recent = sorted(entries.values(), key=lambda e: e.finished_at, reverse=True)[:history]
    return EnvironmentStatus(
        app=spec.app, env=env.name, hosts=[described for described, _ in results], history=recent
    )


def describe_host(state: HostState, env: str) -> HostStatus:
    live = state.live_record
    return HostStatus(
        name=state.host,
        reachable=True,
        epoch=state.epoch,
        live=LiveView(color=live.color, version=live.version, digest=live.digest) if live else None,
        colors={
            c: ColorView.model_validate(r.model_dump(include=set(ColorView.model_fields)))
            for c, r in state.colors.items()
        },
        lock=state.lock.describe(env) if state.lock else None,
        switch=(
            f"unfinished switch to {state.switch.to_version} ({state.switch.to_color}) by "
            f"{state.switch.deployment}; the next deployment reconciles it"
            if state.switch
            else None
        ),
        bad_versions=sorted(state.bad, key=version_key),
        problems=state.problems,
    )


def render_status(status: EnvironmentStatus) -> list[str]:
    lines = [f"{status.app} / {status.env}"]
    for host in status.hosts:
        if not host.reachable:
            lines.append(f"  {host.name}: UNREACHABLE ({host.error})")
            continue
        live = host.live
        what = f"{live.version} on {live.color} ({live.digest[:19]})" if live else "nothing live"
        lines.append(f"  {host.name}: {what}, epoch {host.epoch}")
        for color, record in sorted(host.colors.items()):
            warm = record.warm_until
            until = (
                f" (kept warm until {warm:%H:%M} UTC)"
                if warm and record.status == "running"
                else ""
            )
            lines.append(f"      {color}: {record.version} {record.status}{until}")
        if host.lock:
            lines.append(f"      LOCKED: {host.lock}")
        if host.switch:
            lines.append(f"      SWITCH: {host.switch}")
        for problem in host.problems:
            lines.append(f"      problem: {problem}")
    if status.history:
        lines.append("  last deployments:")
        lines += [f"  {line}" for line in render_history(status.history)]
    return lines


def render_history(history: list[HistoryEntry]) -> list[str]:
    lines = []
    for entry in history:
        skipped = " (tests skipped)" if entry.skipped_tests else ""
        lines.append(
            f"  {entry.finished_at:%Y-%m-%d %H:%M:%S}  {entry.deployment:<45} "
            f"{entry.kind:<8} {entry.result:<12} by {entry.who}{skipped}"
        )
    return lines


async def break_locks(spec: Spec, env_name: str | None) -> list[str]:
    env = spec.environment(env_name)
    layout = layout_for(spec, env)
    lines = []
    for host in env.hosts:
        executor = executor_for(host, env.ssh)
        try:
            result = await executor.run(state_commands.break_lock(layout))
            lines.append(f"{host.name}: lock removed (was: {result.text.strip()})")
        except HostError as exc:
            lines.append(f"{host.name}: {exc.reason}")
        finally:
            await executor.close()
    return lines
