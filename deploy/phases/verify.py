"""verify and smoke: check the idle colour directly, through an SSH tunnel to its own
port on the host, never through the proxy; then the dependency checks."""

from __future__ import annotations

from deploy import probes
from deploy.commands import compose
from deploy.commands.layout import Slot
from deploy.context import Context, StepFailed
from deploy.events import Kind
from deploy.spec import HostSpec


async def verify(ctx: Context) -> None:
    await ctx.each_host(lambda host: verify_host(ctx, host))


async def smoke(ctx: Context) -> None:
    await ctx.each_host(lambda host: smoke_host(ctx, host))


async def verify_host(ctx: Context, host: HostSpec) -> None:
    slot = ctx.target_slot(host)
    await check_health(ctx, host, slot, phase="verify")
    for check in ctx.env.dependencies:
        await ctx.check_cancelled()
        await ctx.run(host, compose.hook(slot, f"{check.name} check", check), phase="verify")
        await ctx.emit(Kind.step, f"{check.name} check passed", phase="verify", host=host.name)
    ctx.progress(host).verified = True


def seen_from_host(host: HostSpec, slot: Slot) -> str:
    """How reports name the colour: its own address on the host (probed via a tunnel)."""
    return f"{slot.color}@{host.name} http://{host.app_address}:{slot.port}"


async def check_health(
    ctx: Context,
    host: HostSpec,
    slot: Slot,
    *,
    phase: str,
    successes: int | None = None,
    interval: float | None = None,
) -> None:
    health = ctx.env.health
    if successes is not None:
        health = health.model_copy(update={"successes": successes})
    if interval is not None:
        health = health.model_copy(update={"interval": min(interval, health.interval)})

    async def still_starting() -> None:
        await check_container_alive(ctx, host, slot, phase=phase)

    async with ctx.executors[host.name].tunnel(host.app_address, slot.port) as port:
        answers = await probes.wait_healthy(
            f"http://127.0.0.1:{port}",
            health,
            ctx.env.version_header,
            still_starting=still_starting,
            shown=seen_from_host(host, slot),
        )
    await ctx.emit(
        Kind.step,
        f"{slot.color} healthy ({len(answers)} checks, last {answers[-1].latency * 1000:.0f} ms)",
        phase=phase,
        host=host.name,
    )


async def check_container_alive(ctx: Context, host: HostSpec, slot: Slot, *, phase: str) -> None:
    """StepFailed when the colour's container has exited or keeps restarting."""
    result = await ctx.run(host, compose.status(slot), phase=phase, quiet=True)
    for state in compose.parse_status(result.tail):
        if state.get("Service") != ctx.env.service:
            continue
        if state.get("State") in ("exited", "dead", "restarting"):
            raise StepFailed(
                host.name,
                f"start {slot.color}",
                f"container {state.get('Name', '?')} is {state.get('State')} "
                f"(exit code {state.get('ExitCode', '?')})",
            )


async def smoke_host(ctx: Context, host: HostSpec) -> None:
    if not ctx.env.smoke:
        await ctx.emit(Kind.step, "no smoke requests configured", phase="smoke", host=host.name)
        return
    slot = ctx.target_slot(host)
    async with ctx.executors[host.name].tunnel(host.app_address, slot.port) as port:
        answers = await probes.smoke(
            f"http://127.0.0.1:{port}",
            ctx.env.smoke,
            ctx.env.version_header,
            shown=seen_from_host(host, slot),
        )
    slowest = max(a.latency for a in answers)
    await ctx.emit(
        Kind.step,
        f"{len(answers)} smoke requests passed (slowest {slowest * 1000:.0f} ms)",
        phase="smoke",
        host=host.name,
        requests=len(answers),
        slowest_ms=round(slowest * 1000, 1),
    )
