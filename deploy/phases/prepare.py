"""prepare: validate the version, name the deployment, resolve the tag to a digest."""

from __future__ import annotations

import asyncio
from datetime import datetime

from deploy.context import Context
from deploy.deployment import Deployment
from deploy.errors import Refused
from deploy.events import Kind
from deploy.registry import RegistryError, resolve_digest
from deploy.spec import Spec, SpecError
from deploy.versions import InvalidVersion, check_tag, deployment_id, parse_version


def new_deployment(
    spec: Spec,
    env_name: str | None,
    version_text: str,
    who: str,
    at: datetime | None = None,
    tag: str | None = None,
) -> Deployment:
    """Validate everything that needs no network; Refused says what is wrong. `tag`
    is the image tag when it is not the version's (a CI build's `sha-1a2b3c4`)."""
    try:
        env = spec.environment(env_name)
        version = parse_version(version_text)
        if tag is not None:
            check_tag(tag)
    except (InvalidVersion, SpecError) as exc:
        raise Refused(str(exc)) from None
    return Deployment(
        id=deployment_id(env.name, version, at),
        env=env.name,
        version=version.tag,
        tag=tag or "",
        who=who,
    )


async def prepare(ctx: Context) -> None:
    """Resolve every image of the release at the version's tag; each is then pulled,
    run and recorded by digest."""
    record = ctx.deployment
    named = ctx.spec.images or {"": ctx.spec.main_image}
    if not record.digest:
        try:
            digests = await asyncio.gather(
                *(
                    resolve_digest(ctx.spec, image_tag(record), ctx.registry_password, image)
                    for image in named.values()
                )
            )
        except RegistryError as exc:
            raise Refused(str(exc)) from None
        refs = {
            name: f"{image}@{digest}"
            for (name, image), digest in zip(named.items(), digests, strict=True)
        }
        # The main image is the one the app's service runs (health checks, digest proof).
        main = ctx.env.service if ctx.env.service in refs else next(iter(refs))
        record.image = refs[main]
        record.digest = record.image.rsplit("@", 1)[-1]
        record.images = refs if ctx.spec.images else {}
    for ref in list(record.images.values()) or [record.image]:
        image, digest = ref.rsplit("@", 1)
        await ctx.emit(
            Kind.step,
            f"{image}:{image_tag(record)} is {digest}",
            phase="prepare",
            facts={"image": ref},
        )


def image_tag(record: Deployment) -> str:
    return record.tag or record.version
