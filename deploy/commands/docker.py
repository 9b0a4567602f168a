"""Plain docker commands: pull by digest and prove which image a container runs."""

from __future__ import annotations

from deploy.commands import Command, command, data
from deploy.commands.layout import Slot

_IMAGES = r"""
service=$1 image=$2
for id in $(docker compose ps --quiet "$service"); do
  printf 'running=%s\n' "$(docker container inspect --format '{{.Image}}' "$id")"
done
printf 'pulled=%s\n' "$(docker image inspect --format '{{.Id}}' "$image")"
"""


def pull(image: str, timeout: float) -> Command:
    return command("docker", "pull", "--quiet", image, step=f"pull {image}", timeout=timeout)


def running_images(slot: Slot, service: str) -> Command:
    """The image id each of the service's containers runs, and the id the digest names."""
    return data(
        _IMAGES,
        service,
        slot.image,
        step="verify image",
        timeout=30,
        cwd=slot.layout.app_dir,
        env=slot.env(),
    )
