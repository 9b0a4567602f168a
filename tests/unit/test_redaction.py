"""The registry password never leaves the engine: not in events, reports, notes or the
printed progress, whatever a command prints."""

import io

from deploy.commands import command
from deploy.context import Context
from deploy.deployment import Deployment
from deploy.events import ListSink
from deploy.pipeline import run_deploy_phases
from greenlight.cli import Printer
from tests.unit.local import local_spec

PASSWORD = "hunter2-registry-secret"


async def test_a_command_that_prints_the_password_leaks_it_nowhere() -> None:
    spec = local_spec()
    sink = ListSink()
    record = Deployment(id="production-v1.0.1-x", env="production", version="v1.0.1", who="a")
    ctx = Context(spec, spec.environment(None), record, sink, registry_password=PASSWORD)
    host = ctx.hosts[0]

    async def leaky_pull(ctx: Context) -> None:
        script = f"echo 'login with {PASSWORD}'; exit 3"
        await ctx.run(host, command("sh", "-c", script, step="pull registry/shop"), phase="x")

    await run_deploy_phases(ctx, [("prepare", leaky_pull)])
    assert record.outcome == "not_switched" and record.failure is not None
    assert record.failure.output == ["login with ***"]
    assert PASSWORD not in record.model_dump_json()
    assert all(PASSWORD not in event.model_dump_json() for event in sink.events)
    printed = io.StringIO()
    printer = Printer(printed)
    for event in sink.events:
        await printer.emit(event)
    assert "login with ***" in printed.getvalue() and PASSWORD not in printed.getvalue()
    assert PASSWORD not in repr(ctx)
