"""Versions become image tags and path components: anything but semver is refused."""

import random
from datetime import UTC, datetime

import pytest

from deploy.versions import (
    InvalidVersion,
    Version,
    check_tag,
    ci_version,
    deployment_id,
    parse_version,
)

HOSTILE = [
    "v1.0.1;rm -rf /",
    "v1.0.1 ; rm -rf /",
    "v1.0.1&&id",
    "v1.0.1||id",
    "v1.0.1|id",
    "v1.0.1`id`",
    "$(reboot)",
    "v1.0.1$(id)",
    "v1.0.1-$(id)",
    "${IFS}v1.0.1",
    "v1.0.1'",
    '"v1.0.1"',
    "'v1.0.1'",
    "v1.0.1 ",
    " v1.0.1",
    "v1.0.1\n",
    "v1.0.1\nid",
    "v1.0.1\t",
    "v1.0.1\x00",
    "v1.0.1\r",
    "v1.0.1>out",
    "v1.0.1<in",
    "v1.0.1*",
    "v1.0.1?",
    "v1.0.1#",
    "v1.0.1\\",
    "{v1.0.1,x}",
    "../../etc/passwd",
    "v1.0.1/../../x",
    "v1.0.1%0aid",
    "v\uff11.0.1",  # fullwidth digit one
    "v\u0661.\u0660.\u0661",  # Arabic-Indic digits
    "\u0475" + "1.0.1",  # Cyrillic izhitsa that looks like a v
    "v1.0.1\u200b",  # zero-width space
    "v1\u2024" + "0.1",  # one dot leader instead of a full stop
    "v1.0.1\u037e",  # Greek question mark, looks like a semicolon
    "",
    "v",
    "latest",
    "1",
    "v1.0",
    "v1.0.1.2",
    "V1.0.1",
    "vv1.0.1",
    "v01.0.1",
    "v1.00.1",
    "v1.0.1-",
    "v1.0.1-rc..1",
    "v1.0.1+build.5",
    "-v1.0.1",
    "--help",
    "v9999999999.0.0",
    "v1.0.1-" + "a" * 80,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: ascii(t)[:40])
def test_hostile_or_malformed_versions_are_refused(text: str) -> None:
    with pytest.raises(InvalidVersion):
        parse_version(text)


def test_refusal_quotes_the_text_safely() -> None:
    with pytest.raises(InvalidVersion) as err:
        parse_version("v1.0.1\u200b;rm -rf /")
    assert "\\u200b" in str(err.value)
    assert "\u200b" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("v1.0.1", "v1.0.1"),
        ("1.0.1", "v1.0.1"),
        ("v10.20.30", "v10.20.30"),
        ("v2.0.0-rc.1", "v2.0.0-rc.1"),
        ("0.0.0", "v0.0.0"),
        ("v1.2.3-beta-2.x", "v1.2.3-beta-2.x"),
    ],
)
def test_semver_with_optional_v_is_accepted_and_canonical(text: str, tag: str) -> None:
    assert parse_version(text).tag == tag


def test_versions_order_numerically() -> None:
    assert parse_version("v1.10.0") > parse_version("v1.9.9")
    assert parse_version("v1.0.1") == Version(1, 0, 1)


def test_prereleases_sort_by_semver_precedence() -> None:
    # The example list of semver.org, section 11, lowest first.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1-alpha",
    ]
    shuffled = ordered[:]
    random.Random(11).shuffle(shuffled)
    assert shuffled != ordered
    assert [v.tag for v in sorted(map(parse_version, shuffled))] == ["v" + v for v in ordered]


def test_a_release_is_newer_than_its_release_candidates() -> None:
    assert parse_version("v1.0.0") > parse_version("v1.0.0-rc.1")
    assert parse_version("v1.0.0-rc.10") > parse_version("v1.0.0-rc.2")
    assert max(map(parse_version, ["v2.0.0-rc.2", "v2.0.0", "v2.0.0-rc.10"])).tag == "v2.0.0"


def test_deployment_id_names_env_version_and_utc_time() -> None:
    at = datetime(2024, 12, 27, 18, 30, 50, tzinfo=UTC)
    assert deployment_id("prod", parse_version("1.0.1"), at) == "prod-v1.0.1-20241227_183050"


def test_a_ci_build_version_is_semver_that_sorts_by_build_time() -> None:
    sha = "4f1e2d3c5b6a798877665544332211ffeeddccbb"
    earlier = ci_version(sha, datetime(2026, 12, 1, 9, 58, 7, tzinfo=UTC))
    later = ci_version("0" * 40, datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC))
    assert str(earlier) == "v0.0.0-ci.20261201095807.4f1e2d3"
    assert earlier < later < parse_version("v0.0.1") and earlier.prerelease.startswith("ci.")
    # Seven decimal digits with a leading zero would not be semver: git describe's g.
    assert str(later) == "v0.0.0-ci.20261201100000.g0000000"
    assert parse_version(str(earlier)) == earlier


@pytest.mark.parametrize("sha", ["", "$(id)", "4f1e2d3;rm", "XYZ1234", "4f1e2d3\n"])
def test_a_ci_build_of_no_commit_is_refused(sha: str) -> None:
    with pytest.raises(InvalidVersion):
        ci_version(sha, datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize("tag", ["sha-4f1e2d3", "v1.0.1", "main_2026.12.01"])
def test_docker_tags_are_accepted(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a/b", "a b", "a;id", "x" * 129, "ü"])
def test_what_is_not_a_docker_tag_is_refused(tag: str) -> None:
    with pytest.raises(InvalidVersion):
        check_tag(tag)
