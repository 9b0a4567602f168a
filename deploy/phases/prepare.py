"""prepare: validate the version, name the deployment, resolve the tag to a digest."""

from __future__ import annotations

from datetime import datetime

from deploy.context import Context
from deploy.deployment import Deployment
from deploy.errors import Refused
from deploy.events import Kind
from deploy.registry import RegistryError, resolve_digest
from deploy.spec import Spec, SpecError
from deploy.versions import InvalidVersion, deployment_id, parse_version


def new_deployment(
    spec: Spec, env_name: str | None, version_text: str, who: str, at: datetime | None = None
) -> Deployment:
    """Validate everything that needs no network; Refused says what is wrong."""
    try:
        env = spec.environment(env_name)
        version = parse_version(version_text)
    except (InvalidVersion, SpecError) as exc:
        raise Refused(str(exc)) from None
    return Deployment(
        id=deployment_id(env.name, version, at), env=env.name, version=version.tag, who=who
    )


async def prepare(ctx: Context) -> None:
    record = ctx.deployment
    if not record.digest:
        try:
            record.digest = await resolve_digest(ctx.spec, record.version, ctx.registry_password)
        except RegistryError as exc:
            raise Refused(str(exc)) from None
    record.image = f"{ctx.spec.image}@{record.digest}"
    await ctx.emit(
        Kind.step,
        f"{ctx.spec.image}:{record.version} is {record.digest}",
        phase="prepare",
        image=record.image,
    )
