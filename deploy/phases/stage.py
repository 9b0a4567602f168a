"""stage: pull by digest, start the idle colour beside the live one, run the migrate,
static and test hooks in it, and prove it runs the digest that was resolved."""

from __future__ import annotations

from deploy.commands import compose, docker
from deploy.commands import state as state_commands
from deploy.commands.layout import Slot
from deploy.context import Context, StepFailed
from deploy.events import Kind
from deploy.phases.verify import check_health
from deploy.spec import HostSpec
from deploy.state import ColorRecord, ColorStatus

PHASE = "stage"


async def stage(ctx: Context) -> None:
    await ctx.each_host(lambda host: stage_host(ctx, host))


async def stage_host(ctx: Context, host: HostSpec) -> None:
    slot = ctx.target_slot(host)
    progress = ctx.progress(host)
    await ctx.run(host, docker.pull(slot.image, ctx.env.pull_timeout), phase=PHASE)
    await ctx.check_cancelled()
    progress.staged = True
    await record_color(ctx, host, slot, "staging")
    await ctx.emit(
        Kind.step, f"starting {slot.color} on port {slot.port}", phase=PHASE, host=host.name
    )
    # Start without compose's --wait: its pace is the image's HEALTHCHECK interval
    # (often 30 s); probing the app directly knows within one health interval.
    await ctx.run(host, compose.start(slot, ctx.env.boot_timeout), phase=PHASE)
    await check_health(ctx, host, slot, phase=PHASE, successes=1)
    for name in ("migrate", "static", "test"):
        hook = getattr(ctx.env.hooks, name)
        if hook is not None:
            await ctx.check_cancelled()
            await ctx.run(host, compose.hook(slot, name, hook), phase=PHASE)
    await verify_digest(ctx, host, slot)
    await record_color(ctx, host, slot, "running")


async def verify_digest(ctx: Context, host: HostSpec, slot: Slot) -> None:
    result = await ctx.run(
        host, docker.running_images(slot, ctx.env.service), phase=PHASE, quiet=True
    )
    running = [line.removeprefix("running=") for line in result.tail if line.startswith("running=")]
    pulled = next(
        (line.removeprefix("pulled=") for line in result.tail if line.startswith("pulled=")), ""
    )
    if len(running) != 1:
        raise StepFailed(
            host.name,
            "verify image",
            f"expected one {ctx.env.service} container in {slot.project}, found {len(running)}",
        )
    if not pulled or running[0] != pulled:
        raise StepFailed(
            host.name,
            "verify image",
            f"{slot.project} runs {running[0][:19]}, not {slot.image}",
        )
    await ctx.emit(
        Kind.step, f"{slot.color} runs {ctx.deployment.digest[:19]}", phase=PHASE, host=host.name
    )


async def record_color(
    ctx: Context, host: HostSpec, slot: Slot, status: ColorStatus, phase: str = PHASE
) -> None:
    record = ColorRecord(
        color=slot.color,
        version=slot.version,
        digest=slot.image.rsplit("@", 1)[-1],
        image=slot.image,
        port=slot.port,
        deployment=slot.deployment,
        status=status,
    )
    await ctx.run(
        host,
        state_commands.write_color(ctx.layout, slot.color, record.model_dump_json()),
        phase=phase,
        quiet=True,
    )
