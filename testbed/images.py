"""The local base image (debootstrap) and the sample app's tags, built and pushed once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from . import paths, services
from .util import TestbedError, docker_api, http_request, log, run

# tag -> APP_FAULT baked into that image
TAGS: dict[str, str] = {
    "v1.0.0": "none",
    "v1.0.1": "none",
    "v1.1.0": "none",
    "v1.0.2": "health500",
    "v1.0.3": "delayed500",
    "v1.0.4": "migrate_fail",
    "v1.0.5": "slow",
    # A CI build of commit 4f1e2d3…, as a workflow_run started at 2026-12-01T09:58:07Z
    # deploys it: the image tag names the commit, the version is Greenlight's for it.
    "sha-4f1e2d3": "none",
}
CI_BUILDS = {"sha-4f1e2d3": "v0.0.0-ci.20261201095807.4f1e2d3"}

# The second image of a release (the seed's frontend), built for the good releases only.
FRONTEND_TAGS = [tag for tag, fault in TAGS.items() if fault == "none" and tag not in CI_BUILDS]

MIRROR = "http://deb.debian.org/debian"
SLIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "var/log",
)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def app_version(tag: str) -> str:
    """What X-App-Version says for an image tag: the tag itself (v1.0.1), or the version
    Greenlight gives a CI build."""
    return CI_BUILDS.get(tag, tag)


def base_tarball() -> Path:
    return paths.cache() / "base-bookworm.tar"


def ensure_base_tarball() -> Path:
    """debootstrap a minimal bookworm with python3 once, slim it, and keep it as a tarball."""
    tarball = base_tarball()
    if tarball.exists():
        return tarball
    log(
        "building the base rootfs: debootstrap --variant=minbase --include=python3 bookworm "
        "(about 40 s, once)"
    )
    rootfs = paths.cache() / "rootfs.tmp"
    _remove_rootfs(rootfs)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    log_file = paths.logs() / "debootstrap.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_file, "w") as out:
            import subprocess

            proc = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=python3",
                    "bookworm",
                    str(rootfs),
                    MIRROR,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={
                    "PATH": paths.DAEMON_PATH,
                    "LANG": "C.UTF-8",
                    "DEBIAN_FRONTEND": "noninteractive",
                },
                timeout=900,
                check=False,
            )
        if proc.returncode != 0:
            from .util import log_tail

            raise TestbedError(
                f"debootstrap failed (exit {proc.returncode}):\n{log_tail(log_file)}"
            )
        for rel in SLIM:
            target = rootfs / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        part = tarball.with_name(tarball.name + ".partial")
        run(["tar", "--numeric-owner", "-C", rootfs, "-cf", part, "."], what="tar rootfs")
        os.replace(part, tarball)
    finally:
        _remove_rootfs(rootfs)
    log(f"base rootfs cached at {tarball} ({tarball.stat().st_size // 2**20} MiB)")
    return tarball


def _remove_rootfs(rootfs: Path) -> None:
    """Remove a (possibly half-made) debootstrap tree, unmounting /proc etc. left inside it."""
    if not rootfs.exists():
        return
    from .cleanup import unmount_under

    unmount_under(rootfs)
    shutil.rmtree(rootfs, ignore_errors=True)


def base_image_id() -> str | None:
    status, body = docker_api(paths.builder_socket(), "GET", f"/images/{paths.BASE_IMAGE}/json")
    return body["Id"] if status == 200 else None


def ensure_base_image() -> str:
    image_id = base_image_id()
    if image_id:
        return image_id
    tarball = ensure_base_tarball()
    run(
        [services.DOCKER_CLI, "import", "--change", "ENV LANG=C.UTF-8", tarball, paths.BASE_IMAGE],
        env=services.builder_env(),
        what="docker import base image",
    )
    image_id = base_image_id()
    if not image_id:
        raise TestbedError(f"{paths.BASE_IMAGE} is missing after docker import")
    log(f"base image {paths.BASE_IMAGE} imported into the builder engine")
    return image_id


def content_hash(base_id: str) -> str:
    digest = hashlib.sha256()
    for name in ("Dockerfile", "app.py", ".dockerignore"):
        digest.update(name.encode() + b"\0" + (paths.SAMPLE_APP / name).read_bytes() + b"\0")
    digest.update(json.dumps(TAGS, sort_keys=True).encode())
    digest.update(base_id.encode())
    return digest.hexdigest()


def registry_digest(tag: str, repo: str = paths.IMAGE_REPO) -> str | None:
    try:
        status, headers, _ = http_request(
            f"{paths.REGISTRY_URL}/v2/{repo}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": MANIFEST_TYPES},
            timeout=5,
        )
    except OSError:
        return None
    return headers.get("docker-content-digest") if status == 200 else None


def record_file() -> Path:
    return paths.builder_dir() / "images.json"


def build(ref: str, tag: str, env: dict[str, str], **args: str) -> None:
    """One sample image: the app at `tag`'s version, with build args that set its fault
    or its role (each also a label, so images that differ only there differ in digest)."""
    words = [
        f"--build-arg=BASE_IMAGE={paths.BASE_IMAGE}",
        f"--build-arg=APP_VERSION={app_version(tag)}",
    ]
    for name, value in args.items():
        words += [f"--build-arg={name}={value}", f"--label=org.greenlight.testbed.{name}={value}"]
    run(
        [services.DOCKER_CLI, "build", "-q", *words, "-t", ref, paths.SAMPLE_APP],
        env=env,
        what=f"docker build {ref}",
    )


def ensure_sample_images() -> dict[str, str]:
    """Build and push every tag unless the registry already holds this exact build."""
    base_id = ensure_base_image()
    wanted = content_hash(base_id)
    try:
        record = json.loads(record_file().read_text())
    except (OSError, ValueError):
        record = {}
    digests: dict[str, str] = record.get("digests", {})
    frontends: dict[str, str] = record.get("frontend", {})
    if (
        record.get("hash") == wanted
        and all(registry_digest(tag) == digests.get(tag) for tag in TAGS)
        and all(
            registry_digest(tag, paths.FRONTEND_REPO) == frontends.get(tag) for tag in FRONTEND_TAGS
        )
    ):
        return digests
    log(f"building {len(TAGS)} sample app tags ({', '.join(TAGS)}) and their frontends")
    env = services.builder_env()
    for tag, fault in TAGS.items():
        build(f"{paths.IMAGE}:{tag}", tag, env, APP_FAULT=fault)
    for tag in FRONTEND_TAGS:
        build(f"{paths.FRONTEND_IMAGE}:{tag}", tag, env, APP_ROLE="frontend")
    for image in (paths.IMAGE, paths.FRONTEND_IMAGE):
        log(f"pushing to {image}")
        run(
            [services.DOCKER_CLI, "push", "--all-tags", image],
            env=env,
            what="docker push",
            timeout=900,
        )
    digests = {}
    for tag in TAGS:
        digest = registry_digest(tag)
        if not digest:
            raise TestbedError(f"registry has no manifest for {paths.IMAGE}:{tag} after push")
        digests[tag] = digest
    frontends = {}
    for tag in FRONTEND_TAGS:
        digest = registry_digest(tag, paths.FRONTEND_REPO)
        if not digest:
            raise TestbedError(f"registry has no {paths.FRONTEND_IMAGE}:{tag} after push")
        frontends[tag] = digest
    record_file().write_text(
        json.dumps({"hash": wanted, "digests": digests, "frontend": frontends}, indent=1) + "\n"
    )
    log("sample images pushed: " + ", ".join(f"{t}={d[7:19]}" for t, d in digests.items()))
    return digests


def image_info(digests: dict[str, str]) -> dict[str, dict[str, str]]:
    return {
        tag: {
            "fault": fault,
            "version": app_version(tag),
            "digest": digests[tag],
            "ref": f"{paths.IMAGE}@{digests[tag]}",
            "tag_ref": f"{paths.IMAGE}:{tag}",
        }
        for tag, fault in TAGS.items()
    }
