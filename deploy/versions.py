"""Release versions and deployment ids.

A version is semver with an optional leading `v` (`1.0.1`, `v1.0.1`, `v2.0.0-rc.1`).
It becomes an image tag and a path component on the hosts, so anything else is
refused here, before any host is contacted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import total_ordering

# ASCII digits only: `\d` would also accept other scripts' digits.
_NUMBER = r"(?:0|[1-9][0-9]{0,8})"
# A prerelease number may be a CI build's UTC timestamp (yyyymmddHHMMSS, 14 digits).
_IDENT = r"(?:0|[1-9][0-9]{0,19}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"v?(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
)
MAX_LENGTH = 64


class InvalidVersion(ValueError):
    """The text is not a release version; the message says why, quoting it safely."""


PrereleaseKey = tuple[tuple[int, int, str], ...]


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: str = ""

    def sort_key(self) -> tuple[int, int, int, bool, PrereleaseKey]:
        """Semver 2.0 precedence: a release sorts after its prereleases, whose
        identifiers compare one by one, numbers numerically and below words."""
        parts = self.prerelease.split(".") if self.prerelease else []
        fields = tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in parts)
        return (self.major, self.minor, self.patch, not self.prerelease, fields)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    @property
    def tag(self) -> str:
        """The image tag and the canonical spelling: always with a leading `v`."""
        core = f"v{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{self.prerelease}" if self.prerelease else core

    def __str__(self) -> str:
        return self.tag


def parse_version(text: str) -> Version:
    if not isinstance(text, str):
        raise InvalidVersion("version must be text")
    if len(text) > MAX_LENGTH:
        raise InvalidVersion(f"version is too long ({len(text)} characters, at most {MAX_LENGTH})")
    if not text.isascii() or not text.isprintable():
        raise InvalidVersion(
            f"version {text!a} contains characters outside printable ASCII; "
            "expected semver such as v1.0.1"
        )
    match = _SEMVER.fullmatch(text)
    if match is None:
        raise InvalidVersion(f"version {text!r} is not semver; expected e.g. v1.0.1 or 1.2.0-rc.1")
    return Version(
        int(match["major"]), int(match["minor"]), int(match["patch"]), match["pre"] or ""
    )


def version_key(text: str) -> tuple[int, int, int, bool, PrereleaseKey]:
    """A sort key for version text kept on hosts; text that is not semver sorts first."""
    try:
        return parse_version(text).sort_key()
    except InvalidVersion:
        return (-1, 0, 0, False, ())


def deployment_id(env: str, version: Version, at: datetime | None = None) -> str:
    """`<env>-<version>-<UTC yyyymmdd_HHMMSS>`, e.g. production-v1.0.1-20241227_183050."""
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    return f"{env}-{version.tag}-{moment:%Y%m%d_%H%M%S}"


# Docker's grammar for a tag: it reaches the registry's URL path and the hosts.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def check_tag(text: str) -> str:
    """An image tag as docker accepts one; InvalidVersion otherwise."""
    if not isinstance(text, str) or not _TAG.fullmatch(text):
        shown = text if isinstance(text, str) else type(text).__name__
        raise InvalidVersion(
            f"image tag {shown[:80]!a} is not a docker tag (letters, digits, _ . -, "
            "at most 128, not starting with . or -)"
        )
    return text


def ci_version(sha: str, at: datetime) -> Version:
    """A CI build's version: a semver prerelease of 0.0.0 that sorts by build time,
    `v0.0.0-ci.<UTC yyyymmddHHMMSS>.<sha7>`; `sha` must be a commit's hex id."""
    if not re.fullmatch(r"[0-9a-f]{7,40}", sha):
        raise InvalidVersion(f"commit {sha[:80]!a} is not a git commit id")
    moment = at.astimezone(UTC)
    short = sha[:7]
    # Seven decimal digits with a leading zero are not a semver identifier (about one
    # commit in 250): those, only, get git describe's `g` in front.
    if short.isdecimal() and short.startswith("0"):
        short = f"g{short}"
    return parse_version(f"v0.0.0-ci.{moment:%Y%m%d%H%M%S}.{short}")
