"""A consumer group on a Redis Stream, for the bot's background work (the GitHub relay,
the GitHub reporter): entries are handled one at a time and acknowledged after, so a
restarted bot re-reads what it had read but not finished, and nothing is lost.

A handler must be safe to run twice for one entry (it can be stopped between its
work and the acknowledgement); one that raises is logged, and its entry acknowledged,
so one bad entry cannot block all the entries after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis

log = logging.getLogger(__name__)
BLOCK_MS = 500  # longest read block: how soon a stop is noticed


class StreamConsumer:
    """Subclasses name the stream and the group and implement `handle`."""

    stream: str
    group: str
    start_at = "$"  # where a new group starts: "$" skips what came before it
    batch = 20  # entries one read takes at most

    def __init__(self, connection: redis.Redis, consumer: str = "bot") -> None:
        self.redis = connection
        self.consumer = consumer
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def handle(self, entry: str, fields: dict[bytes, bytes]) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        await asyncio.to_thread(self._ensure_group)
        self._stopping.clear()
        self._task = asyncio.create_task(self.run(), name=f"greenlight-{self.group}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def run(self) -> None:
        backlog = True  # our own entries read but not acknowledged before a restart
        while not self._stopping.is_set():
            try:
                entries = await asyncio.to_thread(
                    self._read, "0" if backlog else ">", None if backlog else BLOCK_MS
                )
                backlog = backlog and bool(entries)
                for entry, fields in entries:
                    if self._stopping.is_set():
                        break
                    await self._handle(entry, fields)
            except redis.RedisError as exc:  # Redis restarting: try again shortly
                log.warning("%s: %s", self.group, exc)
                await asyncio.sleep(1)
                if "NOGROUP" in str(exc):
                    await asyncio.to_thread(self._ensure_group)

    async def _handle(self, entry: str, fields: dict[bytes, bytes]) -> None:
        try:
            # Shielded: a stop must not split the work from its acknowledgement.
            await asyncio.shield(self.handle(entry, fields))
        except redis.RedisError:
            raise  # not the entry's fault: read again once Redis is back
        except Exception:
            log.exception("%s: entry %s could not be handled; skipped", self.group, entry)
        await asyncio.to_thread(self.redis.xack, self.stream, self.group, entry)

    def _ensure_group(self) -> None:
        with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: it exists
            self.redis.xgroup_create(self.stream, self.group, id=self.start_at, mkstream=True)

    def _read(self, after: str, block_ms: int | None) -> list[tuple[str, dict[bytes, bytes]]]:
        answer: Any = self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: after}, count=self.batch, block=block_ms
        )
        return [
            (_text(entry), fields or {})  # trimmed meanwhile: no fields
            for _, entries in answer or []
            for entry, fields in entries
        ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
