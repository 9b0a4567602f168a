"""Plain docker commands: pull by digest and prove which image a container runs."""

from __future__ import annotations

from deploy.commands import Command, command, data
from deploy.commands.layout import Slot

_IMAGES = r"""
for id in $(docker compose ps --quiet); do
  docker container inspect \
    --format 'running {{index .Config.Labels "com.docker.compose.service"}} {{.Image}}' "$id"
done
for image in "$@"; do
  printf 'pulled %s %s\n' "$image" "$(docker image inspect --format '{{.Id}}' "$image")"
done
"""


def pull(image: str, timeout: float) -> Command:
    """By digest: a second pull finds the same image, or finishes the first one's layers."""
    return command(
        "docker",
        "pull",
        "--quiet",
        image,
        step=f"pull {image}",
        timeout=timeout,
        idempotent=True,
    )


def running_images(slot: Slot) -> Command:
    """`running SERVICE IMAGE-ID` for each of the colour's containers, and `pulled REF
    IMAGE-ID` for each image of the release."""
    return data(
        _IMAGES,
        *slot.all_images,
        step="verify image",
        timeout=30,
        cwd=slot.layout.app_dir,
        env=slot.env(),
        idempotent=True,
    )
