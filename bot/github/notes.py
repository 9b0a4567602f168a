"""Release notes for cards and announcements.

A release the webhook brought carries its own notes (the release's body). For one
asked for in the chat, the notes come from GitHub: the release with the version's tag,
or else the commits between the previous live version's tag and this one (the compare
API). GitHub is asked within a few seconds; when it cannot answer in time, the card or
the announcement goes without notes rather than late.
"""

from __future__ import annotations

import asyncio
import logging

import redis

from bot.github.client import GitHubClient, GitHubError
from bot.render import Notes, origin_notes
from deploy.spec import Spec
from jobs import api
from jobs.records import DeploymentRecord

log = logging.getLogger("greenlight.bot.github")
WAIT = 3.0  # seconds GitHub may take before a card goes without notes
COMMITS_SHOWN = 30


class ReleaseNotes:
    def __init__(self, client: GitHubClient, wait: float = WAIT) -> None:
        self.client = client
        self.wait = wait

    async def for_request(
        self, connection: redis.Redis, specs: dict[str, Spec], record: DeploymentRecord
    ) -> Notes | None:
        """Notes for a request's card: what changes from the release live now."""
        if (own := origin_notes(record.origin)) is not None:
            return own
        try:
            known = await asyncio.to_thread(
                api.summary, connection, specs, app=record.app, env=record.env
            )
        except Exception:  # the card matters more than its notes
            log.exception("notes: could not read what is live on %s/%s", record.app, record.env)
            return None
        previous = known.last_live.version if known.last_live is not None else None
        return await self.for_version(specs.get(record.app), record.version, previous)

    async def for_finished(self, specs: dict[str, Spec], record: DeploymentRecord) -> Notes | None:
        """Notes for the announcement of a release that went live."""
        if (own := origin_notes(record.origin)) is not None:
            return own
        previous = record.deployment.previous_version if record.deployment else None
        return await self.for_version(specs.get(record.app), record.version, previous)

    async def for_version(
        self, spec: Spec | None, version: str, previous: str | None
    ) -> Notes | None:
        if spec is None or spec.github is None:
            return None
        try:
            return await asyncio.wait_for(
                self._fetch(spec.github.repository, version, previous), self.wait
            )
        except (TimeoutError, GitHubError) as exc:
            log.warning("notes for %s %s: %s", spec.app, version, exc or "GitHub was too slow")
            return None

    async def _fetch(self, repository: str, version: str, previous: str | None) -> Notes | None:
        release = await self.client.release_by_tag(repository, version)
        if release is not None and (release.body or "").strip():
            return Notes(text=release.body or "", url=release.html_url)
        if previous is None or previous == version:
            return None
        comparison = await self.client.compare(repository, previous, version)
        if comparison is None or not comparison.commits:
            return None
        lines = [
            f"• {commit.message.strip().splitlines()[0][:200]} ({commit.sha[:7]})"
            for commit in comparison.commits[-COMMITS_SHOWN:]
            if commit.message.strip()
        ]
        more = comparison.total_commits - len(lines)
        if more > 0:
            lines.append(f"… and {more} more commits")
        header = f"Changes since {previous}:"
        return Notes(text="\n".join([header, *lines]), url=comparison.html_url)
