"""What runs where: each host's live colour, version, digest, lock and history."""

from __future__ import annotations

import asyncio
from typing import Any

from deploy.commands import state as state_commands
from deploy.commands.layout import layout_for
from deploy.errors import HostError
from deploy.executor import executor_for
from deploy.spec import HostSpec, Spec
from deploy.state import HistoryEntry, HostState, parse_host_state
from deploy.versions import version_key


async def collect_status(spec: Spec, env_name: str | None, history: int = 10) -> dict[str, Any]:
    env = spec.environment(env_name)
    layout = layout_for(spec, env)

    async def one(host: HostSpec) -> tuple[dict[str, Any], HostState | None]:
        executor = executor_for(host, env.ssh)
        try:
            result = await executor.run(state_commands.read(layout, history))
        except HostError as exc:
            return {"name": host.name, "reachable": False, "error": exc.reason}, None
        finally:
            await executor.close()
        state = parse_host_state(host.name, result.output)
        return describe_host(state, env.name), state

    results = await asyncio.gather(*(one(h) for h in env.hosts))
    entries: dict[str, HistoryEntry] = {}
    for _, state in results:
        for entry in state.history if state else []:
            entries.setdefault(entry.deployment, entry)
    recent = sorted(entries.values(), key=lambda e: e.finished_at, reverse=True)[:history]
    return {
        "app": spec.app,
        "env": env.name,
        "hosts": [described for described, _ in results],
        "history": [e.model_dump() for e in recent],
    }


def describe_host(state: HostState, env: str) -> dict[str, Any]:
    live = state.live_record
    return {
        "name": state.host,
        "reachable": True,
        "epoch": state.epoch,
        "live": (
            {"color": live.color, "version": live.version, "digest": live.digest} if live else None
        ),
        "colors": {
            c: r.model_dump(include={"version", "status", "digest", "images", "warm_until"})
            for c, r in state.colors.items()
        },
        "lock": state.lock.describe(env) if state.lock else None,
        "switch": (
            f"unfinished switch to {state.switch.to_version} ({state.switch.to_color}) by "
            f"{state.switch.deployment}; the next deployment reconciles it"
            if state.switch
            else None
        ),
        "bad_versions": sorted(state.bad, key=version_key),
        "problems": state.problems,
    }


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
