"""Tags resolve to the digests the registry holds, through its HTTP API v2."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from typing import Any

import pytest

from deploy.registry import RegistryError, resolve_digest
from deploy.spec import load_spec
from testbed import paths
from testbed.paths import IMAGE


def test_every_tag_resolves_to_the_digest_docker_pushed(bed_info: dict[str, Any]) -> None:
    """The registry's answer matches what the pushing engine recorded (RepoDigests),
    an independent witness of the bytes that were pushed."""
    spec = load_spec(bed_info["spec"])
    resolved = {}
    for tag in bed_info["images"]:
        pushed = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", f"{IMAGE}:{tag}"],
            env={**os.environ, "DOCKER_HOST": f"unix://{paths.builder_socket()}"},
            capture_output=True,
            text=True,
            check=True,
        )
        repo_digests = json.loads(pushed.stdout)
        resolved[tag] = asyncio.run(resolve_digest(spec, tag))
        assert f"{IMAGE}@{resolved[tag]}" in repo_digests, (tag, repo_digests)
    assert len(set(resolved.values())) == len(resolved)  # every tag is its own image


async def test_a_missing_tag_is_named(bed_info: dict[str, Any]) -> None:
    spec = load_spec(bed_info["spec"])
    with pytest.raises(RegistryError, match=r"greenlight/sample:v0.0.9 does not exist"):
        await resolve_digest(spec, "v0.0.9")
