"""Shared services: Redis, the image registry, the builder Docker engine and the public LB."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from . import paths
from .util import (
    TestbedError,
    daemon_env,
    docker_ping,
    http_request,
    live_pid,
    log,
    log_tail,
    redis_ping,
    run,
    run_to_log,
    spawn,
    stop_pid,
    tcp_open,
    wait_for,
    write_if_changed,
)

# --- Redis -------------------------------------------------------------------------------


def redis_dir() -> Path:
    return paths.root() / "redis"


def redis_pid_file() -> Path:
    return redis_dir() / "redis.pid"


def ensure_redis() -> str:
    if redis_ping():
        return "running"
    redis_dir().mkdir(parents=True, exist_ok=True)
    paths.logs().mkdir(parents=True, exist_ok=True)
    redis_pid_file().unlink(missing_ok=True)
    log_file = paths.logs() / "redis.log"
    run_to_log(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(paths.REDIS_PORT),
            "--pidfile",
            redis_pid_file(),
            "--logfile",
            log_file,
            "--dir",
            redis_dir(),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        log_file,
        what="redis-server",
    )
    if not wait_for(redis_ping, 10):
        raise TestbedError(f"redis did not answer PING on 127.0.0.1:6379\n{log_tail(log_file)}")
    log("redis started on 127.0.0.1:6379")
    return "started"


def stop_redis() -> bool:
    return stop_pid(live_pid(redis_pid_file(), "redis-server"))


# --- registry ----------------------------------------------------------------------------

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: info
  fields: {{service: registry}}
storage:
  filesystem: {{rootdirectory: {data}}}
  delete: {{enabled: true}}
  cache: {{blobdescriptor: inmemory}}
http:
  addr: {addr}
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver: {{enabled: true, interval: 10s, threshold: 3}}
"""


def registry_dir() -> Path:
    return paths.root() / "registry"


def registry_pid_file() -> Path:
    return registry_dir() / "registry.pid"


def registry_up() -> bool:
    try:
        status, headers, _ = http_request(f"{paths.REGISTRY_URL}/v2/", timeout=1.0)
    except OSError:
        return False
    except Exception:
        return False
    return status == 200 and "docker-distribution-api-version" in headers


def ensure_registry() -> str:
    config = registry_dir() / "config.yml"
    changed = write_if_changed(
        config,
        REGISTRY_CONFIG.format(data=registry_dir() / "data", addr=paths.REGISTRY_ADDR),
    )
    pid = live_pid(registry_pid_file(), "docker-registry")
    if registry_up() and not changed:
        return "running"
    if pid:
        stop_pid(pid)
    (registry_dir() / "data").mkdir(parents=True, exist_ok=True)
    log_file = paths.logs() / "registry.log"
    proc = spawn(["docker-registry", "serve", config], log_file)
    registry_pid_file().write_text(f"{proc.pid}\n")
    if not wait_for(registry_up, 15):
        raise TestbedError(
            f"the registry did not come up on {paths.REGISTRY_ADDR}\n{log_tail(log_file)}"
        )
    log(f"registry started on {paths.REGISTRY_ADDR}")
    return "started"


def stop_registry() -> bool:
    return stop_pid(live_pid(registry_pid_file(), "docker-registry"))


# --- Docker engines ----------------------------------------------------------------------


def dockerd_argv(
    socket: Path,
    data_root: Path,
    exec_root: Path,
    pid_file: Path,
    config_file: Path,
    *,
    group: str | None = None,
    cgroup_parent: str | None = None,
) -> list[str]:
    argv = [
        "/usr/sbin/dockerd",
        f"--host=unix://{socket}",
        f"--data-root={data_root}",
        f"--exec-root={exec_root}",
        f"--pidfile={pid_file}",
        f"--config-file={config_file}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--shutdown-timeout=5",
    ]
    if group:
        argv.append(f"--group={group}")
    if cgroup_parent:
        argv.append(f"--cgroup-parent={cgroup_parent}")
    return argv


def in_own_uts(hostname: str, argv: list[str]) -> list[str]:
    """Run argv in its own UTS namespace named hostname (so `docker info` names the host)."""
    return [
        "unshare",
        "--uts",
        "--",
        "sh",
        "-c",
        'hostname "$1" && shift && exec "$@"',
        "sh",
        hostname,
        *argv,
    ]


def start_dockerd(
    name: str,
    socket: Path,
    data_root: Path,
    exec_root: Path,
    pid_file: Path,
    *,
    group: str | None = None,
    cgroup_parent: str | None = None,
) -> subprocess.Popen[bytes] | None:
    """Start dockerd unless it answers already; returns the process to wait for, or None."""
    if docker_ping(socket):
        return None
    old = live_pid(pid_file, str(socket))
    if old:
        # Running but not answering: give it a moment before deciding it is stuck.
        if wait_for(lambda: docker_ping(socket), 10):
            return None
        stop_pid(old)
    pid_file.unlink(missing_ok=True)
    from .cleanup import clean_engine

    clean_engine(exec_root, data_root, cgroup_parent)
    if len(os.fsencode(socket)) > 100:
        raise TestbedError(f"socket path too long for a unix socket: {socket}")
    for d in (data_root, exec_root, pid_file.parent):
        d.mkdir(parents=True, exist_ok=True)
    config = socket.parent / "daemon.json"
    write_if_changed(config, "{}\n")
    argv = dockerd_argv(
        socket, data_root, exec_root, pid_file, config, group=group, cgroup_parent=cgroup_parent
    )
    return spawn(in_own_uts(name, argv), paths.logs() / f"{name}-dockerd.log")


def wait_dockerd(name: str, socket: Path, proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    if not wait_for(lambda: docker_ping(socket) or proc.poll() is not None, 60):
        raise TestbedError(
            f"{name}: dockerd did not answer on {socket} within 60 s\n"
            f"{log_tail(paths.logs() / f'{name}-dockerd.log')}"
        )
    if proc.poll() is not None:
        raise TestbedError(
            f"{name}: dockerd exited with {proc.returncode}\n"
            f"{log_tail(paths.logs() / f'{name}-dockerd.log')}"
        )
    log(f"{name}: docker engine started on {socket}")


def builder_pid_file() -> Path:
    return paths.builder_dir() / "dockerd.pid"


def ensure_builder() -> None:
    b = paths.builder_dir()
    proc = start_dockerd(
        "builder",
        paths.builder_socket(),
        b / "docker",
        paths.EXEC_ROOT / "builder",
        builder_pid_file(),
    )
    wait_dockerd("builder", paths.builder_socket(), proc)


def stop_builder() -> bool:
    return stop_pid(live_pid(builder_pid_file(), str(paths.builder_socket())), timeout=30)


DOCKER_CLI = "/usr/bin/docker"  # docker.io's 20.10 CLI, same version as the engines


def builder_env() -> dict[str, str]:
    """For the docker 20.10 CLI talking to the builder engine (legacy builder, own config)."""
    return daemon_env(
        DOCKER_HOST=f"unix://{paths.builder_socket()}",
        DOCKER_CONFIG=str(paths.builder_dir() / "cli"),
        DOCKER_BUILDKIT="0",
    )


# --- nginx -------------------------------------------------------------------------------

NGINX = "/usr/sbin/nginx"
_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@functools.cache
def nginx_temp_paths() -> str:
    """temp path directives under the prefix, for the modules this nginx build has."""
    try:
        configure = run([NGINX, "-V"], check=False).stderr
    except TestbedError:
        configure = ""
    lines = []
    for kind in _TEMP_KINDS:
        module = {"client_body": None}.get(kind, f"http_{kind}_module")
        if module and f"--without-{module}" in configure:
            continue
        lines.append(f"    {kind}_temp_path tmp/{kind};")
    return "\n".join(lines)


LB_CONF = """\
# Generated by the Greenlight test bed: the public load balancer in front of every host,
# one port per app environment (paths.SITES).
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
user www-data www-data;
events {{}}
http {{
    access_log off;
{temp_paths}
{sites}}}
"""

LB_SITE = """\
    upstream {block} {{
{servers}
        keepalive 32;
    }}
    server {{
        listen {addr}:{port};
        location / {{
            proxy_pass http://{block};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 1s;
            proxy_read_timeout 30s;
        }}
    }}
"""


def nginx_running(pid_file: Path, address: str, port: int) -> bool:
    return bool(live_pid(pid_file, "nginx")) and tcp_open(address, port)


def nginx_cmd(prefix: Path, *extra: str) -> list[str]:
    return [NGINX, *extra, "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "error.log"]


def ensure_lb(host_addresses: list[str]) -> None:
    prefix = paths.lb_prefix()
    www = pwd.getpwnam("www-data")
    for kind in _TEMP_KINDS:
        (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        os.chown(prefix / "tmp" / kind, www.pw_uid, www.pw_gid)
    sites = "".join(
        LB_SITE.format(
            block=site.block,
            servers="\n".join(f"        server {a}:{site.proxy_port};" for a in host_addresses),
            addr=paths.PUBLIC_ADDR,
            port=site.proxy_port,
        )
        for site in paths.SITES
    )
    conf = LB_CONF.format(temp_paths=nginx_temp_paths(), sites=sites)
    changed = write_if_changed(prefix / "nginx.conf", conf)
    pid_file = prefix / "nginx.pid"
    if nginx_running(pid_file, paths.PUBLIC_ADDR, paths.PROXY_PORT):
        if changed:
            run(nginx_cmd(prefix, "-t", "-q"), what="nginx -t (load balancer)")
            run(nginx_cmd(prefix, "-s", "reload"), what="nginx reload (load balancer)")
            log(f"load balancer reloaded: {len(host_addresses)} hosts")
        return
    stop_pid(live_pid(pid_file, "nginx"))
    from .cleanup import kill_listeners

    kill_listeners(paths.PUBLIC_ADDR, paths.PROXY_PORT, "nginx")
    run_to_log(nginx_cmd(prefix), paths.logs() / "lb-nginx.log", what="nginx (load balancer)")
    if not wait_for(lambda: nginx_running(pid_file, paths.PUBLIC_ADDR, paths.PROXY_PORT), 10):
        raise TestbedError(f"load balancer did not start\n{log_tail(prefix / 'error.log')}")
    log(f"load balancer started on {paths.PUBLIC_URL} ({len(host_addresses)} hosts)")


def stop_lb() -> bool:
    return stop_pid(live_pid(paths.lb_prefix() / "nginx.pid", "nginx"))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
