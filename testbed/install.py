"""Install what the test bed needs on a fresh Debian 12 machine: apt packages and compose v2."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from . import paths
from .util import TestbedError, log, run

# A file each package provides -> the package to install when that file is missing.
PACKAGES = {
    "/usr/bin/redis-server": "redis-server",
    "/usr/sbin/dockerd": "docker.io",
    "/usr/bin/docker": "docker.io",
    "/usr/bin/containerd": "containerd",
    "/usr/sbin/runc": "runc",
    "/usr/sbin/nginx": "nginx-light",
    "/usr/sbin/sshd": "openssh-server",
    "/usr/bin/ssh-keygen": "openssh-client",
    "/usr/sbin/debootstrap": "debootstrap",
    "/usr/bin/docker-registry": "docker-registry",
    "/usr/bin/curl": "curl",
    "/usr/share/keyrings/debian-archive-keyring.gpg": "debian-archive-keyring",
}

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
TRIXIE_SOURCE = (
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    "http://deb.debian.org/debian trixie main\n"
)
PLUGIN_IN_DEB = "usr/libexec/docker/cli-plugins/docker-compose"


def missing_packages() -> list[str]:
    wanted: list[str] = []
    for path, package in PACKAGES.items():
        if not os.path.exists(path) and package not in wanted:
            wanted.append(package)
    return wanted


def apt_env() -> dict[str, str]:
    return {
        "PATH": paths.DAEMON_PATH,
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "NEEDRESTART_MODE": "l",
    }


def ensure_packages() -> None:
    wanted = missing_packages()
    if not wanted:
        return
    log(f"installing {' '.join(wanted)} (apt-get)")
    # Packages' maintainer scripts would start their system services (sshd on *:22, nginx on
    # *:80, a default redis and dockerd); policy-rc.d exit 101 forbids that.
    created_policy = not POLICY_RC_D.exists()
    if created_policy:
        POLICY_RC_D.write_text("#!/bin/sh\n# greenlight testbed: no service starts\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        run(["apt-get", "update", "-q"], env=apt_env(), timeout=600, what="apt-get update")
        run(
            [
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                *wanted,
            ],
            env=apt_env(),
            timeout=1200,
            what="apt-get install",
        )
    finally:
        if created_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    still = missing_packages()
    if still:
        raise TestbedError(f"apt-get install left these missing: {' '.join(still)}")


def compose_works(user: str | None = None) -> bool:
    """Does `docker compose version` answer v2 (as root, or as a non-root user)?"""
    argv = ["docker", "compose", "version", "--short"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/games", "LANG": "C.UTF-8"}
    if user is None:
        # A throwaway HOME so that root's own ~/.docker/cli-plugins does not hide a problem.
        with tempfile.TemporaryDirectory() as home:
            proc = run(argv, check=False, env={**env, "HOME": home}, timeout=30)
    else:
        # A login shell: the PATH a non-root user gets (/usr/local/bin:/usr/bin:/bin:/usr/games).
        proc = run(
            ["/bin/su", "-l", user, "-s", "/bin/sh", "-c", " ".join(argv)],
            check=False,
            env=env,
            timeout=30,
        )
    return proc.returncode == 0 and proc.stdout.strip().startswith(("2.", "v2."))


def ensure_compose() -> None:
    """Install the compose v2 CLI plugin system-wide, for every user (Debian 12 has only v1)."""
    target = paths.SYSTEM_PLUGIN
    if target.exists() and compose_works():
        return
    cached = paths.cache() / "docker-compose"
    if not cached.exists():
        _download_compose(cached)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".docker-compose.tmp")
    shutil.copyfile(cached, tmp)
    tmp.chmod(0o755)
    os.replace(tmp, target)
    if not compose_works():
        raise TestbedError(f"`docker compose version` does not work after installing {target}")
    log(f"compose v2 plugin installed at {target}")


def _download_compose(dest: Path) -> None:
    log("fetching the compose v2 plugin (Debian trixie docker-compose .deb)")
    work = paths.cache() / "apt-trixie"
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "debs"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "sources.list").write_text(TRIXIE_SOURCE)
    opts = [
        "-q",
        "-o",
        f"Dir::Etc::SourceList={work / 'sources.list'}",
        "-o",
        f"Dir::Etc::SourceParts={work / 'sources.list.d'}",
        "-o",
        f"Dir::State::Lists={work / 'lists'}",
        "-o",
        f"Dir::Cache={work / 'cache'}",
        "-o",
        "APT::Sandbox::User=root",
    ]
    run(["apt-get", *opts, "update"], env=apt_env(), what="apt-get update (trixie)")
    debs = work / "debs"
    for old in debs.glob("*.deb"):
        old.unlink()
    run(
        ["apt-get", *opts, "download", "docker-compose"],
        env=apt_env(),
        cwd=debs,
        what="apt-get download docker-compose",
    )
    found = sorted(debs.glob("docker-compose_*.deb"))
    if not found:
        raise TestbedError("apt-get download docker-compose produced no .deb")
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        run(["dpkg-deb", "-x", found[-1], tmp], what="dpkg-deb -x")
        binary = Path(tmp) / PLUGIN_IN_DEB
        if not binary.exists():
            raise TestbedError(f"{found[-1].name} holds no {PLUGIN_IN_DEB}")
        part = dest.with_name(dest.name + ".partial")
        shutil.copyfile(binary, part)
        part.chmod(0o755)
        os.replace(part, dest)
