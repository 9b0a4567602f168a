"""Tags resolve to the digests the registry holds, through its HTTP API v2."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.registry import RegistryError, resolve_digest
from deploy.spec import load_spec


async def test_every_tag_resolves_to_the_pushed_digest(bed_info: dict[str, Any]) -> None:
    spec = load_spec(bed_info["spec"])
    for tag, image in bed_info["images"].items():
        assert await resolve_digest(spec, tag) == image["digest"]


async def test_a_missing_tag_is_named(bed_info: dict[str, Any]) -> None:
    spec = load_spec(bed_info["spec"])
    with pytest.raises(RegistryError, match=r"greenlight/sample:v0.0.9 does not exist"):
        await resolve_digest(spec, "v0.0.9")
