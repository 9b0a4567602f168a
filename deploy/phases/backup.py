"""backup: run the backup hook in the live colour, measure it, refuse an empty one,
save the containers' state beside it, and prune backups past retention."""

from __future__ import annotations

from deploy.commands import backup as backup_commands
from deploy.context import Context
from deploy.deployment import BackupRecord
from deploy.errors import StepFailed
from deploy.events import Kind
from deploy.spec import HostSpec
from deploy.state import parse_facts

PHASE = "backup"


async def backup(ctx: Context) -> None:
    await ctx.each_host(lambda host: backup_host(ctx, host))


async def backup_host(ctx: Context, host: HostSpec) -> None:
    progress = ctx.progress(host)
    hook = ctx.env.hooks.backup
    live = progress.live_before
    if progress.backup is not None:
        return
    if hook is None or live is None:
        why = "no backup hook configured" if hook is None else "nothing live yet (first deploy)"
        await ctx.emit(Kind.step, f"backup skipped: {why}", phase=PHASE, host=host.name)
        return
    slot = ctx.record_slot(host, live)
    stamp = ctx.deployment.id.rsplit("-", 1)[-1]
    directory = f"{ctx.env.backup.dir}/pre-deploy-{ctx.deployment.version}-{stamp}"
    file = ctx.env.backup.file
    await ctx.run(host, backup_commands.dump(slot, hook, directory, file), phase=PHASE)
    await ctx.run(host, backup_commands.save_containers(slot, directory), phase=PHASE, quiet=True)
    cmd = backup_commands.describe(ctx.env.app_dir, directory, file)
    result = await ctx.run(host, cmd, phase=PHASE, quiet=True)
    facts = parse_facts(result.lines)
    size = int(facts.get("size") or 0)
    if size == 0:
        raise StepFailed(
            host.name, "backup", f"{directory}/{file} is empty; refusing to go on without a backup"
        )
    progress.backup = BackupRecord(
        path=f"{ctx.env.app_dir}/{directory}",
        size=size,
        sha256=facts.get("sha256", ""),
        total_kb=int(facts.get("total_kb") or 0),
    )
    await ctx.emit(
        Kind.step,
        f"backup {progress.backup.path}: {size} bytes, sha256 {progress.backup.sha256[:12]}",
        phase=PHASE,
        host=host.name,
        facts=progress.backup.model_dump(),
    )
    pruned = await ctx.run(
        host,
        backup_commands.prune(ctx.env.app_dir, ctx.env.backup.dir, ctx.env.backup.retention_days),
        phase=PHASE,
        quiet=True,
    )
    if pruned.tail:
        await ctx.emit(
            Kind.step,
            f"pruned {len(pruned.tail)} backups older than {ctx.env.backup.retention_days} days",
            phase=PHASE,
            host=host.name,
            facts={"pruned": len(pruned.tail)},
        )
