"""What people are called in the chat (@username), by the id the jobs API knows them by
(tg:<id>): the progress messages say "approved by @bob", not "tg:1002"."""

from __future__ import annotations

from typing import Any

import redis

NAMES_KEY = "greenlight:bot:names"  # tg:<id> -> the name they last wrote under


def remember(connection: redis.Redis, who: str, name: str) -> None:
    """How `who` (tg:<id>) is called in the chat, for the progress messages to say."""
    connection.hset(NAMES_KEY, who, name)


def names_of(connection: redis.Redis, people: list[str | None]) -> dict[str, str]:
    known = [p for p in dict.fromkeys(people) if p]
    if not known:
        return {}
    found: Any = connection.hmget(NAMES_KEY, known)
    return {
        p: n.decode() if isinstance(n, bytes) else str(n)
        for p, n in zip(known, found, strict=True)
        if n is not None
    }
