"""Running one colour on one host: start it, prove it healthy, keep it warm, stop it,
tear it down, and put a good release back into it."""

from __future__ import annotations

from datetime import timedelta

from deploy import probes
from deploy.commands import compose, docker
from deploy.commands.layout import Slot
from deploy.context import Context
from deploy.errors import ProbeFailed, StepFailed
from deploy.events import Kind
from deploy.ops.records import record_color
from deploy.spec import HostSpec
from deploy.state import ColorRecord, now, parse_compose_status


def seen_from_host(host: HostSpec, slot: Slot) -> str:
    """How reports name the colour: its own address on the host (probed via a tunnel)."""
    return f"{slot.color}@{host.name} http://{host.app_address}:{slot.port}"


async def start_color(ctx: Context, host: HostSpec, slot: Slot, *, phase: str) -> None:
    """Pull by digest and start the colour beside the live one, until it answers healthy."""
    for image in slot.all_images:
        await ctx.run(host, docker.pull(image, ctx.env.pull_timeout), phase=phase)
        await ctx.check_cancelled()
    ctx.progress(host).staged = True
    await record_color(ctx, host, slot, "staging", phase=phase)
    await ctx.emit(
        Kind.step, f"starting {slot.color} on port {slot.port}", phase=phase, host=host.name
    )
    # Start without compose's --wait: its pace is the image's HEALTHCHECK interval
    # (often 30 s); probing the app directly knows within one health interval.
    await ctx.run(host, compose.start(slot, ctx.env.boot_timeout), phase=phase)
    await check_health(ctx, host, slot, phase=phase, successes=1)


async def check_health(
    ctx: Context,
    host: HostSpec,
    slot: Slot,
    *,
    phase: str,
    successes: int | None = None,
    interval: float | None = None,
) -> None:
    """Health checks against the colour's own port, never through the proxy; every
    answer must carry the colour's own version (else another container has its port)."""
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
            expect_version=slot.version,
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
    for state in parse_compose_status(result.lines):
        if state.get("Service") != ctx.env.service:
            continue
        if state.get("State") in ("exited", "dead", "restarting"):
            raise StepFailed(
                host.name,
                f"start {slot.color}",
                f"container {state.get('Name', '?')} is {state.get('State')} "
                f"(exit code {state.get('ExitCode', '?')})",
            )


async def ensure_running(ctx: Context, host: HostSpec, record: ColorRecord, *, phase: str) -> None:
    """A warm colour answers its health check at once; a stopped one is started first
    (without probing it: a colour recorded as stopped cannot answer)."""
    slot = ctx.record_slot(host, record)
    if record.status == "running":
        quick = ctx.env.health.model_copy(update={"successes": 1, "deadline": 1.0, "interval": 0.2})
        try:
            async with ctx.executors[host.name].tunnel(host.app_address, slot.port) as port:
                await probes.wait_healthy(
                    f"http://127.0.0.1:{port}",
                    quick,
                    ctx.env.version_header,
                    expect_version=slot.version,
                )
            return
        except ProbeFailed:
            pass
    await ctx.emit(
        Kind.step,
        f"{slot.color} ({slot.version}) is not running; starting it",
        phase=phase,
        host=host.name,
    )
    await ctx.run(host, compose.start(slot, ctx.env.boot_timeout), phase=phase)
    await check_health(ctx, host, slot, phase=phase, successes=1, interval=0.1)
    await record_color(ctx, host, slot, "running", phase=phase)


async def retire(
    ctx: Context, host: HostSpec, record: ColorRecord, *, keep: float, phase: str
) -> None:
    """The colour that served before a successful switch: kept warm for `keep` seconds
    (a rollback is then one reload), stopped by the host itself afterwards."""
    slot = ctx.record_slot(host, record)
    if keep <= 0:
        await ctx.run(host, compose.stop(slot), phase=phase)
        await record_color(ctx, host, slot, "stopped", phase=phase)
        return
    until = now() + timedelta(seconds=keep)
    await record_color(ctx, host, slot, "running", phase=phase, warm_until=until)
    await ctx.run(host, compose.stop_later(slot, keep), phase=phase, quiet=True)
    await ctx.emit(
        Kind.step,
        f"{slot.color} ({slot.version}) kept warm until {until:%H:%M:%S} UTC for a fast rollback",
        phase=phase,
        host=host.name,
    )


async def teardown(ctx: Context, host: HostSpec, *, phase: str) -> None:
    """Remove the colour this deployment started (its data volume stays), then put the
    good release it replaced back in that colour, stopped, so a rollback stays fast."""
    progress = ctx.progress(host)
    if not progress.staged or progress.target is None:
        return
    slot = ctx.target_slot(host)
    await ctx.run(host, compose.down(slot), phase=phase)
    await record_color(ctx, host, slot, "removed", phase=phase)
    progress.staged = False
    kept = progress.idle_before
    if kept is None or kept.color != slot.color or kept.version == ctx.deployment.version:
        return
    previous = ctx.record_slot(host, kept)
    await ctx.run(host, compose.create(previous), phase=phase)
    await record_color(ctx, host, previous, "stopped", phase=phase)
    await ctx.emit(
        Kind.step,
        f"{previous.version} is back in {previous.color} (stopped) for a fast rollback",
        phase=phase,
        host=host.name,
    )


async def verify_digest(ctx: Context, host: HostSpec, slot: Slot, *, phase: str) -> None:
    """The colour runs exactly the images the digests name: the app's service runs the
    main image, and every image of the release runs in some container of the colour."""
    result = await ctx.run(host, docker.running_images(slot), phase=phase, quiet=True)
    running: list[tuple[str, str]] = []
    pulled: dict[str, str] = {}
    for line in result.lines:
        kind, _, rest = line.partition(" ")
        first, _, second = rest.partition(" ")
        if kind == "running":
            running.append((first, second))
        elif kind == "pulled":
            pulled[first] = second
    service = [image for name, image in running if name == ctx.env.service]
    if len(service) != 1:
        raise StepFailed(
            host.name,
            "verify image",
            f"expected one {ctx.env.service} container in {slot.project}, found {len(service)}",
        )
    for ref in slot.all_images:
        expected = pulled.get(ref)
        ids = service if ref == slot.image else [image for _, image in running]
        if not expected or expected not in ids:
            raise StepFailed(
                host.name, "verify image", f"{slot.project} does not run {ref} (image {expected})"
            )
    digest = slot.image.rsplit("@", 1)[-1]
    more = f" and {len(slot.images) - 1} more image(s)" if len(slot.images) > 1 else ""
    await ctx.emit(Kind.step, f"{slot.color} runs {digest[:19]}{more}", phase=phase, host=host.name)
