"""Moving traffic between colours: point a host's proxy, confirm what it serves, and
reconcile a switch that a killed controller left unfinished.

The engine never believes the upstream file over the proxy: a switch is marked on the
host before the file changes and unmarked only once the proxy is seen serving it.
"""

from __future__ import annotations

from deploy import probes
from deploy.commands import proxy
from deploy.commands import state as state_commands
from deploy.commands.layout import Slot
from deploy.context import Context
from deploy.errors import CommandFailed, Refused, StepFailed
from deploy.events import Kind
from deploy.ops.colors import ensure_running
from deploy.spec import Color, HostSpec
from deploy.state import HostState, SwitchRecord, parse_host_state


def upstream_for(ctx: Context, slot: Slot) -> str:
    return proxy.upstream_text(
        ctx.env.proxy.upstream_template,
        color=slot.color,
        address=slot.host.app_address,
        port=slot.port,
        version=slot.version,
        deployment=ctx.deployment.id,
        epoch=ctx.progress(slot.host).epoch or 0,
    )


async def point_proxy(
    ctx: Context, host: HostSpec, content: str, to_color: Color, to_version: str, *, phase: str
) -> None:
    """Write the upstream (fenced by our epoch), test the config and reload, in one
    round trip; a config the proxy rejects is put back on the host itself."""
    progress = ctx.progress(host)
    epoch = progress.epoch or 0
    mark = SwitchRecord(
        deployment=ctx.deployment.id,
        epoch=epoch,
        to_color=to_color,
        to_version=to_version,
        before=progress.upstream_before,
    )
    cmd = proxy.point(ctx.layout, ctx.env.proxy, content, epoch, mark.model_dump_json())
    try:
        await ctx.run(host, cmd, phase=phase, quiet=True)
    except CommandFailed as exc:
        why = proxy.FAILURES.get(exc.result.exit_status)
        if why is None:
            raise
        raise StepFailed(host.name, "switch proxy", why, exc.result.tail) from None


async def confirm(ctx: Context, host: HostSpec | None, version: str, *, phase: str) -> None:
    """The proxy (one host's, or the public URL) serves `version` to new visitors."""
    base = ctx.env.proxy_url(host) if host else ctx.env.public_url
    url = base.rstrip("/") + ctx.env.health.path
    settings = ctx.env.proxy
    took = await probes.confirm_version(
        url,
        ctx.env.version_header,
        version,
        successes=settings.confirm_successes,
        settle=settings.confirm_settle,
        timeout=settings.confirm_timeout,
    )
    await ctx.emit(
        Kind.step,
        f"{base} answers {version} ({took * 1000:.0f} ms after reload, settled)",
        phase=phase,
        host=host.name if host else None,
        facts={"confirm_ms": round(took * 1000, 1)},
    )


async def finish_switch(ctx: Context, host: HostSpec, *, phase: str) -> None:
    """The proxy is confirmed to serve what the file says: unmark the switch."""
    epoch = ctx.progress(host).epoch or 0
    await ctx.run(host, proxy.clear_switch(ctx.layout, epoch), phase=phase, quiet=True)


async def served_version(ctx: Context, host: HostSpec) -> str | None:
    url = ctx.env.proxy_url(host).rstrip("/") + ctx.env.health.path
    return await probes.answering_version(url, ctx.env.version_header)


def describe_version(state: HostState, version: str | None) -> str:
    if version is None:
        return "no version"
    colors = [c for c, r in state.colors.items() if r.version == version]
    return f"{version} ({colors[0]})" if colors else version


async def check_proxy_agrees(ctx: Context, host: HostSpec, state: HostState) -> None:
    """Refused when the host's proxy serves another version than the one recorded live."""
    live = state.live_record  # what the file's colour runs, not what its marker claims
    if live is None:
        return
    served = await served_version(ctx, host)
    if served != live.version:
        raise Refused(
            f"{host.name}: the proxy serves {describe_version(state, served)}, but the host "
            f"records {live.color} ({live.version}) as live; check the proxy and its upstream "
            f"file ({ctx.layout.upstream_file}) before deploying"
        )


async def reconcile(ctx: Context, host: HostSpec, state: HostState, *, phase: str) -> HostState:
    """A switch marked on the host and never confirmed (its controller was killed):
    look at what the proxy actually serves, then put back what was live before it, and
    return the host's state as it now is. Needs the lock (our epoch)."""
    mark = state.switch
    assert mark is not None
    before = mark.live_before
    served = await served_version(ctx, host)
    back_to = before.version if before else "nothing live"
    if served not in (None, mark.to_version, before.version if before else None):
        raise Refused(
            f"{host.name}: a switch by {mark.deployment} was left unfinished and the proxy "
            f"serves {served}, neither {back_to} nor {mark.to_version}; fix it by hand"
        )
    await ctx.emit(
        Kind.warning,
        f"switch to {mark.to_version} by {mark.deployment} was left unfinished; the proxy "
        f"serves {served or 'no version'}; putting back {back_to}",
        phase=phase,
        host=host.name,
    )
    if before is not None:
        record = state.colors.get(before.color)
        if record is None or record.version != before.version:
            raise Refused(
                f"{host.name}: a switch by {mark.deployment} was left unfinished and "
                f"{before.color} no longer holds {before.version}; fix it by hand"
            )
        await ensure_running(ctx, host, record, phase=phase)
    ctx.progress(host).upstream_before = mark.before
    color = before.color if before else mark.to_color
    await point_proxy(ctx, host, mark.before, color, back_to, phase=phase)
    if before is not None:
        await confirm(ctx, host, before.version, phase=phase)
    await finish_switch(ctx, host, phase=phase)
    result = await ctx.run(host, state_commands.read(ctx.layout), phase=phase, quiet=True)
    return parse_host_state(host.name, result.output)
