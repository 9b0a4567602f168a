"""Plain docker commands: pull by digest and prove which image a container runs."""

from __future__ import annotations

from deploy.commands import Command, command


def pull(image: str, timeout: float) -> Command:
    return command("docker", "pull", "--quiet", image, step=f"pull {image}", timeout=timeout)


def image_id(image: str) -> Command:
    return command(
        "docker",
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        image,
        step="inspect pulled image",
        timeout=30,
    )


def container_image_id(container: str) -> Command:
    return command(
        "docker",
        "container",
        "inspect",
        "--format",
        "{{.Image}}",
        container,
        step="inspect running container",
        timeout=30,
    )
