"""test: the release's own critical tests (the spec's `hooks.test`), run on each host
against the new colour before any smoke request, with a fail-fast time budget.

The hook gets the colour's compose project and `GREENLIGHT_URL`, the colour's own
address, in its environment. Skipping it takes an explicit flag, which the
deployment's record, its history line and its summary all carry.
"""

from __future__ import annotations

from deploy.commands import compose
from deploy.context import Context
from deploy.events import Kind
from deploy.spec import HostSpec

PHASE = "test"


async def run_tests(ctx: Context) -> None:
    hook = ctx.env.hooks.test
    if hook is None:
        await ctx.emit(Kind.step, "no test hook configured", phase=PHASE)
        return
    if ctx.deployment.skip_tests:
        await ctx.emit(
            Kind.warning,
            f"tests SKIPPED at {ctx.deployment.who}'s request (--skip-tests)",
            phase=PHASE,
        )
        return
    await ctx.each_host(lambda host: test_host(ctx, host))


async def test_host(ctx: Context, host: HostSpec) -> None:
    hook = ctx.env.hooks.test
    assert hook is not None
    slot = ctx.target_slot(host)
    url = f"http://{host.app_address}:{slot.port}"
    result = await ctx.run(
        host, compose.hook(slot, "test", hook, {"GREENLIGHT_URL": url}), phase=PHASE
    )
    await ctx.emit(
        Kind.step,
        f"tests passed against {slot.color} in {result.duration:.1f} s",
        phase=PHASE,
        host=host.name,
    )
