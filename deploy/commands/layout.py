"""Where things live on a target host, derived from the environment's spec.

Relative paths are relative to the deploy user's login directory, which is where
every command starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from deploy.spec import Color, Environment, HostSpec, Spec


@dataclass(frozen=True)
class Layout:
    # The colours' compose projects are `<project_prefix>-<color>`.
    project_prefix: str
    app_dir: str
    compose_file: str
    upstream_file: str
    backup_dir: str

    @property
    def state_dir(self) -> str:
        return f"{self.app_dir}/.greenlight"

    def project(self, color: Color) -> str:
        return f"{self.project_prefix}-{color}"


def layout_for(spec: Spec, env: Environment) -> Layout:
    return Layout(
        project_prefix=spec.project_prefix(env),
        app_dir=env.app_dir,
        compose_file=env.compose_file,
        upstream_file=env.proxy.upstream_file,
        backup_dir=env.backup.dir,
    )


@dataclass(frozen=True)
class Slot:
    """One colour on one host running one image: what compose and hooks are told."""

    layout: Layout
    host: HostSpec
    color: Color
    port: int
    image: str
    version: str
    deployment: str
    # A release of several images: name -> ref@digest, one variable each.
    images: Mapping[str, str] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return self.layout.project(self.color)

    def env(self) -> dict[str, str]:
        return {
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_FILE": self.layout.compose_file,
            "GREENLIGHT_IMAGE": self.image,
            "GREENLIGHT_PORT": str(self.port),
            "GREENLIGHT_BIND": self.host.app_address,
            "GREENLIGHT_COLOR": self.color,
            "GREENLIGHT_VERSION": self.version,
            "GREENLIGHT_DEPLOYMENT": self.deployment,
        } | {f"GREENLIGHT_IMAGE_{name.upper()}": ref for name, ref in self.images.items()}

    @property
    def all_images(self) -> list[str]:
        """Every image the colour runs, the main one first."""
        return list(dict.fromkeys([self.image, *self.images.values()]))
