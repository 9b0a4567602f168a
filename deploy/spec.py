"""The deployment spec: `greenlight.yml` loaded into pydantic models.

The file names the app, its image and its environments. Every check (health, smoke,
stability, hooks) is declared once at the top level; an environment may repeat any
top-level section to override it for that environment only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# libyaml's safe loader when PyYAML was built with it: every phase job reads the spec,
# and the pure-Python parser takes 20 times as long (tens of ms for one spec).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_HOSTNAME = re.compile(r"[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*")

PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]
Port = Annotated[int, Field(ge=1, le=65_535)]
Argv = Annotated[list[str], Field(min_length=1)]


class SpecError(ValueError):
    """The spec cannot be used; the message names the key and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSpec(_Model):
    name: Annotated[str, Field(pattern=_NAME)]
    address: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:-]+$")]
    port: Port = 22
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "deploy"
    app_address: Annotated[str, Field(pattern=r"^[A-Za-z0-9.:-]+$")] = "127.0.0.1"
    proxy_url: str | None = None


class SSHSpec(_Model):
    key: Path
    known_hosts: Path
    connect_timeout: PositiveSeconds = 5.0
    command_timeout: PositiveSeconds = 600.0
    keepalive: PositiveSeconds = 5.0


class ProxySpec(_Model):
    upstream_file: str = "nginx/upstream.conf"
    upstream_template: str = "server {address}:{port};"
    test: Argv = ["nginx", "-t", "-q"]
    reload: Argv = ["nginx", "-s", "reload"]
    confirm_timeout: PositiveSeconds = 5.0
    confirm_successes: Annotated[int, Field(ge=1, le=100)] = 3
    # How long every new connection must see the new version before the switch counts:
    # nginx's old workers keep accepting for about 100 ms after a reload.
    confirm_settle: Annotated[float, Field(ge=0, le=60)] = 0.3

    @field_validator("upstream_template")
    @classmethod
    def _placeholders(cls, template: str) -> str:
        try:
            template.format(address="127.0.0.1", port=1)
        except (KeyError, IndexError, ValueError):
            raise ValueError("may use only the {address} and {port} placeholders") from None
        if "{address}" not in template or "{port}" not in template:
            raise ValueError("must contain {address} and {port}")
        return template


class RegistrySpec(_Model):
    # Declared before `url`, whose check reads it.
    insecure: bool = False
    url: str | None = None
    username: str | None = None
    # Token services on hosts other than the registry's own (Docker Hub's is
    # auth.docker.io) that may be sent the registry password.
    auth_hosts: list[str] = Field(default_factory=list)
    timeout: PositiveSeconds = 10.0

    @field_validator("url")
    @classmethod
    def _encrypted_unless_opted_out(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError(
                "must not hold credentials: set registry.username, and the password in "
                "$GREENLIGHT_REGISTRY_PASSWORD"
            )
        remote_http = parts.scheme == "http" and not is_loopback(parts.hostname)
        if remote_http and not info.data.get("insecure"):
            raise ValueError(
                f"plain http:// to {parts.hostname} sends the password and the digest "
                "unprotected; use https://, or set registry.insecure: true"
            )
        return url

    @field_validator("auth_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not _HOSTNAME.fullmatch(host):
                raise ValueError(f"must be host names such as auth.example.com, got {host!r}")
        return [host.lower() for host in hosts]


class HealthSpec(_Model):
    path: str = "/"
    interval: PositiveSeconds = 1.0
    timeout: PositiveSeconds = 2.0
    deadline: PositiveSeconds = 60.0
    successes: Annotated[int, Field(ge=1, le=100)] = 3
    # Unhealthy answers in a row that fail the check at once (refusals only count
    # against the deadline: the app may still be starting).
    failures: Annotated[int, Field(ge=1, le=100)] = 3
    expect_json: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        return _url_path(path)


class SmokeRequest(_Model):
    path: str
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    expect: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)] = [200]
    contains: str | None = None
    json_key: str | None = None
    max_latency: PositiveSeconds = 5.0

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        return _url_path(path)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if "\n" in value or "\r" in value:
                raise ValueError(f"header {name} contains a line break")
        return headers


class HookSpec(_Model):
    """A command run on the host, in the app directory, with the colour's compose project."""

    command: Argv
    timeout: PositiveSeconds = 300.0


class DependencyCheck(HookSpec):
    name: Annotated[str, Field(pattern=_NAME)]
    timeout: PositiveSeconds = 30.0


class HooksSpec(_Model):
    backup: HookSpec | None = None
    migrate: HookSpec | None = None
    static: HookSpec | None = None
    test: HookSpec | None = None


class BackupSpec(_Model):
    dir: str = "backups"
    file: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = "dump"
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30


class StabilitySpec(_Model):
    duration: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    interval: PositiveSeconds = 10.0
    timeout: PositiveSeconds = 2.0
    max_errors: Annotated[int, Field(ge=0)] = 3
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_latency: PositiveSeconds = 1.0
    paths: Annotated[list[str], Field(min_length=1)] = ["/"]

    @field_validator("paths")
    @classmethod
    def _absolute(cls, paths: list[str]) -> list[str]:
        return [_url_path(p) for p in paths]


class ThresholdsSpec(_Model):
    min_disk_mb: Annotated[int, Field(ge=0)] = 1024
    min_memory_mb: Annotated[int, Field(ge=0)] = 256


class Ports(_Model):
    blue: Port = 8001
    green: Port = 8002

    @model_validator(mode="after")
    def _distinct(self) -> Ports:
        if self.blue == self.green:
            raise ValueError("blue and green must use different ports")
        return self

    def of(self, color: Color) -> int:
        return self.blue if color == "blue" else self.green


class Settings(_Model):
    """Sections that are set at the top level and may be overridden per environment."""

    app_dir: str = "app"
    compose_file: str = "compose.yml"
    # The colours run as compose projects `<project>-blue` and `<project>-green`; the
    # default is the app's name. Two environments of one app on the same hosts each
    # need their own (`shop-staging`).
    project: Annotated[str, Field(pattern=_NAME)] | None = None
    service: Annotated[str, Field(pattern=_NAME)] = "web"
    ports: Ports = Ports()
    version_header: Annotated[str, Field(pattern=_HEADER.pattern)] = "X-App-Version"
    proxy: ProxySpec = ProxySpec()
    health: HealthSpec = HealthSpec()
    smoke: list[SmokeRequest] = Field(default_factory=list)
    dependencies: list[DependencyCheck] = Field(default_factory=list)
    hooks: HooksSpec = HooksSpec()
    backup: BackupSpec = BackupSpec()
    stability: StabilitySpec = StabilitySpec()
    thresholds: ThresholdsSpec = ThresholdsSpec()
    drain: Annotated[float, Field(ge=0, le=3600)] = 5.0
    # Seconds the previous release keeps running after a deploy, so that "we spotted a
    # bug right after the release" is a one-second rollback; 0 stops it at once.
    keep_previous: Annotated[float, Field(ge=0, le=7 * 86_400)] = 3600.0
    parallel: Annotated[int, Field(ge=1, le=100)] = 10
    pull_timeout: PositiveSeconds = 600.0
    boot_timeout: PositiveSeconds = 120.0
    # Policy for deployments requested through the workers (the bot, `deploy --queue`):
    # whether someone other than the requester must approve first, and whether the
    # switch waits after smoke, the new colour running and verified, for a promote.
    approval: Literal["required", "none"] = "required"
    approval_timeout: Annotated[float, Field(gt=0, le=7 * 86_400)] = 3600.0
    promote: Literal["auto", "manual"] = "auto"
    promote_timeout: Annotated[float, Field(gt=0, le=7 * 86_400)] = 3600.0


class Environment(Settings):
    name: Annotated[str, Field(pattern=_NAME)]
    hosts: Annotated[list[HostSpec], Field(min_length=1)]
    ssh: SSHSpec
    public_url: str
    # A host with `address: local` runs its commands on the controller, with no SSH and
    # no host-key check; an environment has to ask for that by name.
    allow_local: bool = False

    @model_validator(mode="after")
    def _unique_hosts(self) -> Environment:
        names = [h.name for h in self.hosts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"host names must be unique, repeated: {', '.join(dupes)}")
        return self

    def proxy_url(self, host: HostSpec) -> str:
        return host.proxy_url or self.public_url


ImageRef = Annotated[str, Field(pattern=r"^[a-z0-9.:-]+(/[a-z0-9._-]+)+$")]
Repository = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")]


class ReleaseTrigger(_Model):
    """A published GitHub release deploys its tag to `environment`; a prerelease goes
    to `prereleases` (an environment's name) or, with `ignore`, nowhere."""

    environment: str
    prereleases: str = "ignore"


class CITrigger(_Model):
    """A successful run of `workflow` (its file name, e.g. build.yml, or its name) on
    `branch` deploys the image built for that commit, tagged `tag` ({sha}, {sha7})."""

    workflow: Annotated[str, Field(min_length=1, max_length=200)]
    branch: Annotated[str, Field(min_length=1, max_length=255)] = "main"
    environment: str
    tag: str = "sha-{sha7}"

    @field_validator("tag")
    @classmethod
    def _tag_template(cls, template: str) -> str:
        try:
            example = template.format(sha="0" * 40, sha7="0" * 7)
        except (KeyError, IndexError, ValueError):
            raise ValueError("may use only the {sha} and {sha7} placeholders") from None
        if "{sha}" not in template and "{sha7}" not in template:
            raise ValueError("must contain {sha} or {sha7}: one image per commit")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", example):
            raise ValueError(f"gives {example!r}, which is not a docker tag")
        return template


class GitHubSpec(_Model):
    """The repository whose releases and CI runs reach this app through the webhook,
    and which gets a GitHub Deployment with statuses for every run."""

    repository: Repository
    release: ReleaseTrigger | None = None
    ci: CITrigger | None = None


# Each image of a release reaches compose as GREENLIGHT_IMAGE_<NAME>.
ImageName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,30}$")]


class Spec(_Model):
    app: Annotated[str, Field(pattern=_NAME)]
    # One image, or several released together under one tag (a backend and a frontend).
    image: ImageRef | None = None
    images: dict[ImageName, ImageRef] = Field(default_factory=dict)
    registry: RegistrySpec = RegistrySpec()
    default_environment: str | None = None
    environments: dict[str, Environment]
    github: GitHubSpec | None = None
    source: Path | None = None

    @model_validator(mode="after")
    def _default_env_exists(self) -> Spec:
        if self.default_environment and self.default_environment not in self.environments:
            raise ValueError(
                f"default_environment {self.default_environment!r} is not one of the "
                f"environments ({', '.join(sorted(self.environments))})"
            )
        return self

    @model_validator(mode="after")
    def _triggers_name_environments(self) -> Spec:
        if self.github is None:
            return self
        named = {
            "github.release.environment": self.github.release and self.github.release.environment,
            "github.release.prereleases": self.github.release
            and self.github.release.prereleases != "ignore"
            and self.github.release.prereleases,
            "github.ci.environment": self.github.ci and self.github.ci.environment,
        }
        for key, name in named.items():
            if name and name not in self.environments:
                raise ValueError(
                    f"{key}: {name!r} is not one of the environments "
                    f"({', '.join(sorted(self.environments))})"
                )
        return self

    @model_validator(mode="after")
    def _one_way_to_name_images(self) -> Spec:
        if (self.image is None) == (not self.images):
            raise ValueError(
                "name the app's image with `image:`, or several with `images:` (not both)"
            )
        return self

    @model_validator(mode="after")
    def _local_hosts_are_opted_in(self) -> Spec:
        for name, env in self.environments.items():
            for index, host in enumerate(env.hosts):
                if host.address == "local" and not env.allow_local:
                    raise ValueError(
                        f"environments.{name}.hosts.{index}.address: 'local' runs commands "
                        "on this machine without SSH or a host-key check; set "
                        f"environments.{name}.allow_local: true to allow it"
                    )
        return self

    @model_validator(mode="after")
    def _environments_apart(self) -> Spec:
        problem = _sharing_problem([(self, env) for env in self.environments.values()])
        if problem:
            raise ValueError(problem)
        return self

    def project_prefix(self, env: Environment) -> str:
        """The environment's compose projects are `<prefix>-blue` and `<prefix>-green`."""
        return env.project or self.app

    def environment(self, name: str | None) -> Environment:
        """The named environment, or the default one; SpecError names the choices."""
        choices = ", ".join(sorted(self.environments))
        if name is None:
            name = self.default_environment
            if name is None and len(self.environments) == 1:
                name = next(iter(self.environments))
            if name is None:
                raise SpecError(f"choose an environment with --env ({choices})")
        if name not in self.environments:
            raise SpecError(f"unknown environment {name!r} (known: {choices})")
        return self.environments[name]

    def fingerprint(self) -> str:
        """A hash of everything the spec says (not where it was read from)."""
        text = self.model_dump_json(exclude={"source"})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def main_image(self) -> str:
        """`image`, or the first of `images` (a deployment's main image is the one its
        environment's service runs)."""
        return self.image or next(iter(self.images.values()))

    @property
    def registry_host(self) -> str:
        return registry_host(self.main_image)


def registry_host(image: str) -> str:
    return image.split("/", 1)[0]


def repository(image: str) -> str:
    return image.split("/", 1)[1]


def is_loopback(host: str) -> bool:
    """Traffic to this host never leaves the machine: localhost, 127.0.0.0/8, ::1."""
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_path(path: str) -> str:
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise ValueError(f"must be an absolute URL path, got {path!r}")
    return path


_TOP_LEVEL = {
    "app",
    "image",
    "images",
    "registry",
    "default_environment",
    "environments",
    "github",
}
_OVERRIDABLE = set(Settings.model_fields)


def parse_spec(raw: Any, source: Path | None = None) -> Spec:
    """Validate a parsed YAML document; errors name the key path and the problem."""
    if not isinstance(raw, dict):
        raise SpecError("the spec must be a mapping with app, image and environments")
    unknown = set(raw) - _TOP_LEVEL - _OVERRIDABLE
    if unknown:
        raise SpecError(f"{sorted(unknown)[0]}: unknown key")
    shared = {k: v for k, v in raw.items() if k in _OVERRIDABLE}
    try:  # top-level sections first, so their errors name the key where it was written
        Settings.model_validate(shared)
    except ValidationError as exc:
        raise SpecError(_describe(exc)) from None
    envs = raw.get("environments")
    if not isinstance(envs, dict) or not envs:
        raise SpecError("environments: at least one environment is required")
    merged: dict[str, Any] = {}
    for name, env in envs.items():
        if not isinstance(env, dict):
            raise SpecError(f"environments.{name}: must be a mapping")
        merged[name] = {**shared, **env, "name": name}
    document = {k: v for k, v in raw.items() if k in _TOP_LEVEL} | {"environments": merged}
    if source is not None:
        document["source"] = source
    try:
        spec = Spec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(_describe(exc)) from None
    return _resolve_local_paths(spec, source)


# Specs parsed before, by (where, the file's exact text): every phase job reads its spec
# again (a changed one must be noticed), and a worker that parsed it before forking hands
# the parse to each job's work horse. Keyed by content, an entry is never stale; a Spec
# is frozen, so sharing one is safe.
_PARSED: dict[tuple[Path, str], Spec] = {}
_PARSED_MAX = 64


def load_spec(path: str | os.PathLike[str] | None = None) -> Spec:
    """Load the spec from PATH, $GREENLIGHT_CONFIG, or ./greenlight.yml."""
    chosen = Path(path or os.environ.get("GREENLIGHT_CONFIG") or "greenlight.yml")
    try:
        text = chosen.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {chosen}: {exc.strerror}") from None
    where = chosen.resolve()
    key = (where, hashlib.sha256(text.encode()).hexdigest())
    if (known := _PARSED.get(key)) is not None:
        return known
    try:
        raw = yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 (a safe loader, in C)
    except yaml.YAMLError as exc:
        raise SpecError(f"{chosen}: not valid YAML: {exc}") from None
    spec = parse_spec(raw, where)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[key] = spec
    return spec


def load_specs(path: str | os.PathLike[str] | None = None) -> dict[str, Spec]:
    """PATH (or $GREENLIGHT_CONFIG, or ./greenlight.yml) is one spec, or a directory of
    specs, one app each (`*.yml`, `*.yaml`). Apps that would collide on a host (the same
    app directory, upstream file or ports) are refused, naming both."""
    chosen = Path(path or os.environ.get("GREENLIGHT_CONFIG") or "greenlight.yml")
    if not chosen.is_dir():
        spec = load_spec(chosen)
        check_apart({spec.app: spec})
        return {spec.app: spec}
    files = sorted(p for p in chosen.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    if not files:
        raise SpecError(f"{chosen}: no spec (*.yml) in this directory")
    specs: dict[str, Spec] = {}
    for file in files:
        try:
            spec = load_spec(file)
        except SpecError as exc:
            raise SpecError(f"{file.name}: {exc}") from None
        if spec.app in specs:
            first = specs[spec.app].source
            where = first.name if first else "another file"
            raise SpecError(f"{file.name}: app {spec.app!r} is already defined in {where}")
        specs[spec.app] = spec
    check_apart(specs)
    _one_app_per_repository(specs)
    return specs


def _one_app_per_repository(specs: dict[str, Spec]) -> None:
    """A release must say which app it is: two specs naming one repository cannot."""
    named: dict[str, str] = {}
    for spec in specs.values():
        if spec.github is None:
            continue
        repo = spec.github.repository.lower()  # GitHub's names ignore case
        if repo in named:
            raise SpecError(
                f"github.repository {spec.github.repository!r} is named by both "
                f"{named[repo]} and {spec.app}; a webhook could not tell which to deploy"
            )
        named[repo] = spec.app


def app_for_repository(specs: dict[str, Spec], repository: str) -> Spec | None:
    """The app whose spec names `repository` (case-insensitive, as GitHub's are)."""
    for spec in specs.values():
        if spec.github is not None and spec.github.repository.lower() == repository.lower():
            return spec
    return None


def check_apart(specs: dict[str, Spec]) -> None:
    """Two deployments that share a host must not share what is theirs on it."""
    problem = _sharing_problem(
        [(spec, env) for spec in specs.values() for env in spec.environments.values()]
    )
    if problem:
        raise SpecError(problem)


def _sharing_problem(deployments: list[tuple[Spec, Environment]]) -> str | None:
    """What two of these (app, environment) pairs that share a host would both use there:
    the app directory, the upstream file, a port or the compose project prefix."""
    seen: dict[tuple[str, int], list[tuple[Spec, Environment]]] = {}
    for spec, env in deployments:
        for host in env.hosts:
            seen.setdefault((host.address, host.port), []).append((spec, env))
    for (address, port), users in seen.items():
        for i, (spec_a, a) in enumerate(users):
            for spec_b, b in users[i + 1 :]:
                if (spec_a.app, a.name) == (spec_b.app, b.name):
                    return f"{spec_a.app}/{a.name} lists {address}:{port} twice"
                shared = []
                if a.app_dir == b.app_dir:
                    shared.append(f"app_dir {a.app_dir!r}")
                if a.proxy.upstream_file == b.proxy.upstream_file:
                    shared.append(f"upstream_file {a.proxy.upstream_file!r}")
                ports = {a.ports.blue, a.ports.green} & {b.ports.blue, b.ports.green}
                if ports:
                    shared.append(f"port {min(ports)}")
                prefix = spec_a.project_prefix(a)
                if prefix == spec_b.project_prefix(b):
                    shared.append(f"compose project prefix {prefix!r} (set `project:` in one)")
                if shared:
                    who = f"{spec_a.app}/{a.name} and {spec_b.app}/{b.name} on {address}"
                    return f"{who} both use {', '.join(shared)}"
    return None


def choose_app(specs: dict[str, Spec], app: str | None) -> Spec:
    """The named app, or the only one; SpecError names the choices."""
    choices = ", ".join(sorted(specs))
    if app is None:
        if len(specs) == 1:
            return next(iter(specs.values()))
        raise SpecError(f"choose an app with --app ({choices})")
    if app not in specs:
        raise SpecError(f"unknown app {app!r} (known: {choices})")
    return specs[app]


def _resolve_local_paths(spec: Spec, source: Path | None) -> Spec:
    """SSH key paths are local files; relative ones are relative to the spec file."""
    if source is None:
        return spec
    base = source.parent
    envs = {
        name: env.model_copy(
            update={
                "ssh": env.ssh.model_copy(
                    update={
                        "key": base / env.ssh.key,
                        "known_hosts": base / env.ssh.known_hosts,
                    }
                )
            }
        )
        for name, env in spec.environments.items()
    }
    return spec.model_copy(update={"environments": envs})


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{loc}: {message}" if loc else message)
    return "; ".join(problems)
