"""The whole test bed: `up` (install, start, build, generate), `down`, `status`."""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import cleanup, hosts, images, install, paths, render, services, state
from .paths import Host
from .util import TestbedError, docker_ping, keygen, locked, log, redis_ping, require_root, run


def ensure_client_key() -> str:
    """The SSH client key: generated once under TESTBED_ROOT/ssh and copied into .testbed/ssh.

    One key per machine, not per clone, so that a CI clone's `up` and a working tree's `up`
    do not lock each other out of the hosts (authorized_keys holds this one key).
    """
    master = paths.root() / "ssh" / "id_ed25519"
    master.parent.mkdir(parents=True, exist_ok=True)
    master.parent.chmod(0o700)
    local = paths.client_key()
    paths.ssh_dir().mkdir(parents=True, exist_ok=True)
    paths.ssh_dir().chmod(0o700)
    if not _key_pair(master):
        if _key_pair(local):
            _copy_key(local, master)  # adopt the key this clone already uses
        else:
            keygen(master, "greenlight-testbed")
            log(f"client key generated: {local}")
    if not _key_pair(local) or local.read_bytes() != master.read_bytes():
        _copy_key(master, local)
    return Path(f"{master}.pub").read_text()


def _key_pair(key: Path) -> bool:
    return key.is_file() and Path(f"{key}.pub").is_file()


def _copy_key(src: Path, dest: Path) -> None:
    for suffix, mode in (("", 0o600), (".pub", 0o644)):
        target = Path(f"{dest}{suffix}")
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(Path(f"{src}{suffix}").read_bytes())
        tmp.chmod(mode)
        os.replace(tmp, target)


def up(hosts_wanted: int | None = None) -> dict[str, Any]:
    """Install what is missing and start everything; idempotent and fast when all is up."""
    require_root()
    started = time.monotonic()
    if hosts_wanted is not None and not 1 <= hosts_wanted <= paths.MAX_HOSTS:
        raise TestbedError(f"--hosts must be between 1 and {paths.MAX_HOSTS}")
    with locked():
        remembered = state.host_count()
        count = max(hosts_wanted or 1, remembered)
        if hosts_wanted is not None and hosts_wanted < remembered:
            log(f"keeping {remembered} hosts (the largest count used; `down --purge` forgets it)")
        all_hosts = paths.all_hosts(count)

        install.ensure_packages()
        for d in (paths.root(), paths.logs(), paths.cache(), paths.EXEC_ROOT):
            d.mkdir(parents=True, exist_ok=True)
        paths.root().chmod(0o755)
        (paths.root() / "hosts").mkdir(exist_ok=True)
        (paths.root() / "hosts").chmod(0o755)

        with ThreadPoolExecutor(max_workers=2) as pool:
            compose = pool.submit(install.ensure_compose)
            base = pool.submit(images.ensure_base_tarball)
            services.ensure_redis()
            services.ensure_registry()
            services.ensure_builder()
            client_pub = ensure_client_key()
            hosts.setup(all_hosts, client_pub)
            state.save({**state.load(), "hosts": count})
            base.result()
            digests = images.ensure_sample_images()
            compose.result()
        if not install.compose_works(all_hosts[0].user):
            raise TestbedError(f"`docker compose version` fails for {all_hosts[0].user}")
        services.ensure_lb([h.address for h in all_hosts])
        render.write_all(all_hosts, digests)
    log(
        f"up: {count} host(s) ready in {time.monotonic() - started:.1f}s "
        f"(spec {paths.spec_file()}, env {paths.env_file()})"
    )
    return load_info()


def known_hosts_on_disk() -> list[Host]:
    """Every host that has a directory under the state root (for `down`)."""
    base = paths.root() / "hosts"
    found = []
    if base.is_dir():
        for entry in sorted(base.iterdir()):
            try:
                found.append(Host.named(entry.name))
            except ValueError:
                continue
    return found


def down(purge: bool = False) -> None:
    """Stop every process the test bed started and undo its mounts; data stays unless purge."""
    require_root()
    started = time.monotonic()
    with locked():
        on_disk = known_hosts_on_disk()
        with ThreadPoolExecutor(max_workers=max(len(on_disk), 1)) as pool:
            list(pool.map(hosts.stop, on_disk))
        if on_disk:
            log(f"stopped {len(on_disk)} host(s): {', '.join(h.name for h in on_disk)}")
        if services.stop_lb():
            log("load balancer stopped")
        if services.stop_builder():
            log("builder engine stopped")
        if services.stop_registry():
            log("registry stopped")
        if services.stop_redis():
            log("redis stopped")
        cleanup.kill_strays(os.fspath(paths.EXEC_ROOT) + "/", os.fspath(paths.root()) + "/")
        unmounted = cleanup.unmount_under(paths.root(), paths.EXEC_ROOT)
        if unmounted:
            log(f"unmounted {unmounted} leftover mount(s)")
        shutil.rmtree(paths.EXEC_ROOT, ignore_errors=True)
        if purge:
            _purge(on_disk)
    log(f"down in {time.monotonic() - started:.1f}s")


def _purge(on_disk: list[Host]) -> None:
    for host in on_disk:
        run(["userdel", host.user], check=False)
        run(["groupdel", host.user], check=False)
    keep = paths.cache()
    for entry in paths.root().iterdir() if paths.root().is_dir() else []:
        if entry != keep and entry.name != ".lock":
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    shutil.rmtree(paths.state_dir(), ignore_errors=True)
    log(f"purged {paths.root()} (kept {keep}) and {paths.state_dir()}")


def status() -> dict[str, Any]:
    count = state.host_count()
    lb_pid = paths.lb_prefix() / "nginx.pid"
    return {
        "root": os.fspath(paths.root()),
        "hosts_configured": count,
        "redis": redis_ping(),
        "registry": services.registry_up(),
        "builder": docker_ping(paths.builder_socket()),
        "lb": services.nginx_running(lb_pid, paths.PUBLIC_ADDR, paths.PROXY_PORT),
        "compose_plugin": paths.SYSTEM_PLUGIN.exists(),
        "hosts": [hosts.status(h) for h in paths.all_hosts(count)],
    }


def healthy(report: dict[str, Any]) -> bool:
    shared = all(report[k] for k in ("redis", "registry", "builder", "lb", "compose_plugin"))
    per_host = all(h["sshd"] and h["nginx"] and h["docker"] for h in report["hosts"])
    return bool(report["hosts_configured"]) and shared and per_host


def load_info() -> dict[str, Any]:
    """The machine-readable description `up` wrote to .testbed/testbed.json."""
    try:
        return json.loads(paths.info_file().read_text())
    except FileNotFoundError:
        raise TestbedError(f"{paths.info_file()} is missing: run `scripts/testbed up`") from None
