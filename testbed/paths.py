"""Where everything lives: the state root, the repo-local `.testbed/`, and each host's paths.

Standard library only: the test bed must run with the system python3 before any venv exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"

MAX_HOSTS = 10
SSH_PORT = 2222
PROXY_PORT = 8080
REDIS_PORT = 6379
REGISTRY_ADDR = "127.0.0.1:5000"
REGISTRY_URL = f"http://{REGISTRY_ADDR}"
IMAGE_REPO = "greenlight/sample"
IMAGE = f"{REGISTRY_ADDR}/{IMAGE_REPO}"
FRONTEND_REPO = "greenlight/sample-frontend"
FRONTEND_IMAGE = f"{REGISTRY_ADDR}/{FRONTEND_REPO}"
BASE_IMAGE = "greenlight/base:bookworm"
PUBLIC_ADDR = "127.0.0.1"
PUBLIC_URL = f"http://{PUBLIC_ADDR}:{PROXY_PORT}"
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
APP_NAME = "sample"
PORTS = {"blue": 8001, "green": 8002}
# A second app on the same hosts (the same sample image): its own app dir, ports,
# upstream file and proxy port, so several apps are tested for real.
LEDGER = "ledger"
LEDGER_PORTS = {"blue": 8011, "green": 8012}
LEDGER_PROXY_PORT = 8081
STAGING = "staging"


@dataclass(frozen=True)
class Site:
    """One environment of one app, served by every host: its app dir (under the host
    user's home), colour ports, upstream file (under `nginx/`), proxy port (on each host
    and on the load balancer) and compose project prefix."""

    app: str
    env: str
    dir_name: str
    ports: dict[str, int]
    upstream_name: str
    proxy_port: int
    # nginx's name for the upstream block (one per site in a proxy's config)
    block: str

    @property
    def public_url(self) -> str:
        return f"http://{PUBLIC_ADDR}:{self.proxy_port}"

    @property
    def project(self) -> str:
        """The compose project prefix: the app's name in production, `<app>-<env>` else."""
        return self.app if self.env == "production" else f"{self.app}-{self.env}"


# production keeps the bed's first ports, dirs and upstream files; each app's staging
# environment runs beside it on the same hosts with its own of each.
SITES = (
    Site(APP_NAME, "production", "app", PORTS, "upstream.conf", PROXY_PORT, "app"),
    Site(
        LEDGER,
        "production",
        LEDGER,
        LEDGER_PORTS,
        "ledger-upstream.conf",
        LEDGER_PROXY_PORT,
        "ledger",
    ),
    Site(
        APP_NAME,
        STAGING,
        "app-staging",
        {"blue": 8021, "green": 8022},
        "staging-upstream.conf",
        8082,
        "app_staging",
    ),
    Site(
        LEDGER,
        STAGING,
        "ledger-staging",
        {"blue": 8031, "green": 8032},
        "ledger-staging-upstream.conf",
        8083,
        "ledger_staging",
    ),
)


def site(app: str = APP_NAME, env: str = "production") -> Site:
    """The app's environment among SITES."""
    return next(s for s in SITES if (s.app, s.env) == (app, env))


# dockerd exec roots hold containerd's unix socket: keep them short (108-byte sun_path limit).
EXEC_ROOT = Path("/run/gltb")
SYSTEM_PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def root() -> Path:
    """TESTBED_ROOT: heavy state (engine data, registry, caches, logs, pid files)."""
    return Path(os.environ.get("GREENLIGHT_TESTBED_ROOT") or "/var/lib/greenlight-testbed")


def state_dir() -> Path:
    """The repo-local `.testbed/`: generated spec, env file, testbed.json and SSH client files."""
    return REPO / ".testbed"


def logs() -> Path:
    return root() / "logs"


def cache() -> Path:
    return root() / "cache"


def ssh_dir() -> Path:
    return state_dir() / "ssh"


def client_key() -> Path:
    return ssh_dir() / "id_ed25519"


def known_hosts() -> Path:
    return ssh_dir() / "known_hosts"


def spec_file() -> Path:
    return state_dir() / "greenlight.yml"


def apps_dir() -> Path:
    """A directory of specs, one per app (sample and ledger), for multi-app use."""
    return state_dir() / "apps"


def env_file() -> Path:
    return state_dir() / "env"


def info_file() -> Path:
    return state_dir() / "testbed.json"


def builder_dir() -> Path:
    return root() / "builder"


def builder_socket() -> Path:
    return builder_dir() / "docker.sock"


def lb_prefix() -> Path:
    return root() / "lb"


@dataclass(frozen=True)
class Host:
    """One simulated host: h{i} on 127.0.0.{i+1}, its own user, engine, sshd and nginx."""

    index: int

    @classmethod
    def named(cls, name: str) -> Host:
        if not name.startswith("h") or not name[1:].isdigit():
            raise ValueError(f"not a host name: {name!r} (expected h1 .. h{MAX_HOSTS})")
        index = int(name[1:])
        if not 1 <= index <= MAX_HOSTS:
            raise ValueError(f"no such host: {name!r} (expected h1 .. h{MAX_HOSTS})")
        return cls(index)

    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.0.{self.index + 1}"

    @property
    def user(self) -> str:
        return f"gl-{self.name}"

    @property
    def dir(self) -> Path:
        return root() / "hosts" / self.name

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def app_dir(self) -> Path:
        return self.home / "app"

    @property
    def nginx_prefix(self) -> Path:
        return self.home / "nginx"

    @property
    def upstream_file(self) -> Path:
        return self.nginx_prefix / "upstream.conf"

    def site_dir(self, site: Site) -> Path:
        return self.home / site.dir_name

    def site_upstream(self, site: Site) -> Path:
        return self.nginx_prefix / site.upstream_name

    def site_proxy_url(self, site: Site) -> str:
        return f"http://{self.address}:{site.proxy_port}"

    @property
    def nginx_pid(self) -> Path:
        return self.nginx_prefix / "nginx.pid"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.address}:{PROXY_PORT}"

    @property
    def docker_socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_socket}"

    @property
    def docker_data(self) -> Path:
        return self.dir / "docker"

    @property
    def exec_root(self) -> Path:
        return EXEC_ROOT / self.name

    @property
    def dockerd_pid(self) -> Path:
        return self.dir / "dockerd.pid"

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def sshd_pid(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.home / ".ssh" / "authorized_keys"

    @property
    def cgroup_parent(self) -> str:
        return f"gltb-{self.name}"


def all_hosts(count: int) -> list[Host]:
    return [Host(i) for i in range(1, count + 1)]
