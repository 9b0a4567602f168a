"""The seed workflow's traffic switch and rollback, as the baseline to beat.

T_DEV_010 stops the running compose project, moves the new compose file into place
and starts it on the same port (`docker-compose down`, `mv`, `up -d`); its rollback
does the same the other way round. Built from the same command builders and run
through the same SSH executor, so the only difference measured is the method.
"""

from __future__ import annotations

from deploy.commands import compose
from deploy.commands.layout import Slot, layout_for
from deploy.executor import executor_for
from deploy.spec import Spec


def _slot(spec: Spec, image: str, version: str) -> Slot:
    env = spec.environment(None)
    host = env.hosts[0]
    # One project on one fixed port: what the proxy (or the users) always talk to.
    return Slot(layout_for(spec, env), host, "blue", env.ports.blue, image, version, "seed")


async def stop_then_start(spec: Spec, old: tuple[str, str], new: tuple[str, str]) -> None:
    """`docker-compose down` the running version, then `up -d` the new one in its place."""
    env = spec.environment(None)
    executor = executor_for(env.hosts[0], env.ssh)
    try:
        await executor.run(compose.down(_slot(spec, *old)))
        await executor.run(compose.start(_slot(spec, *new), env.boot_timeout))
    finally:
        await executor.close()
