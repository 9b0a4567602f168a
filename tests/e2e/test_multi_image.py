"""A release of two images under one tag (the seed's backend and frontend): each is
resolved, pulled and run by digest, recorded per colour, and rolled back together."""

from __future__ import annotations

from pathlib import Path

import httpx

from testbed.paths import FRONTEND_IMAGE, IMAGE
from tests.e2e.conftest import FAST, Bed, assert_served


def two_images(bed: Bed) -> Path:
    return bed.spec(
        name="two-images",
        image=None,
        images={"web": IMAGE, "frontend": FRONTEND_IMAGE},
        compose_file="compose.multi.yml",
        **FAST,
    )


def frontend(color: str) -> str | None:
    """What h1's frontend of that colour says it is (its port is the colour's + 1000)."""
    port = {"blue": 9001, "green": 9002}[color]
    answer = httpx.get(f"http://127.0.0.2:{port}/", timeout=2)
    assert answer.headers["X-App-Role"] == "frontend"
    return answer.headers.get("X-App-Version")


def test_both_images_go_live_together_and_roll_back_together(bed: Bed) -> None:
    spec = two_images(bed)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.1", config=spec)
    assert_served(load.stop())
    assert run.code == 0, run.output
    assert run.has(r"greenlight/sample:v1.0.1 is sha256:[0-9a-f]{64}")
    assert run.has(r"greenlight/sample-frontend:v1.0.1 is sha256:[0-9a-f]{64}")
    assert run.has(r"green runs sha256:[0-9a-f]{12} and 1 more image")
    assert frontend("green") == "v1.0.1"
    green = bed.status(spec)["hosts"][0]["colors"]["green"]
    assert sorted(green["images"]) == ["frontend", "web"]
    assert green["images"]["frontend"].startswith(f"{FRONTEND_IMAGE}@sha256:")
    with bed.load("h1") as load:
        back = bed.greenlight("rollback", config=spec)
    assert_served(load.stop())
    assert back.code == 0, back.output
    assert bed.live(spec) == {"h1": "v1.0.0"} and frontend("blue") == "v1.0.0"


def test_rollback_restores_every_image_of_a_release_no_colour_keeps(bed: Bed) -> None:
    spec = two_images(bed)
    for version in ("v1.0.0", "v1.0.1", "v1.1.0"):
        assert bed.greenlight("deploy", version, config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("rollback", "--to", "v1.0.0", config=spec)
    assert_served(load.stop())
    assert run.code == 0, run.output
    assert run.has(r"restoring it from its image")
    assert bed.live(spec) == {"h1": "v1.0.0"} and frontend("green") == "v1.0.0"


def test_a_tag_missing_for_one_image_is_refused_before_anything_changes(bed: Bed) -> None:
    spec = two_images(bed)
    run = bed.greenlight("deploy", "v1.0.2", config=spec)  # no frontend was built for it
    assert run.code == 2, run.output
    assert run.has(r"greenlight/sample-frontend:v1.0.2 does not exist in the registry")
    assert bed.status(spec)["hosts"][0]["epoch"] == 0
