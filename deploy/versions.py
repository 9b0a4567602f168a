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
_IDENT = r"(?:0|[1-9][0-9]{0,8}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
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
