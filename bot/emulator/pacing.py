"""Telegram's flood limits: about one message a second in a private chat (with a small
burst), twenty a minute in a group or channel, plus a switch that forces 429s."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

PRIVATE_BURST = 3
PRIVATE_PER_SECOND = 1.0
GROUP_PER_MINUTE = 20


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Pacer:
    """Decides whether one more message or edit in a chat is over Telegram's limits."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._group_sends: dict[int, deque[float]] = {}
        self.enabled = True
        self.forced_count = 0
        self.forced_retry_after = 1

    def force(self, count: int, retry_after: int) -> None:
        """Answer the next `count` rate-limited calls with 429, whatever the pace."""
        self.forced_count = count
        self.forced_retry_after = retry_after

    def retry_after(self, chat_id: int, private: bool) -> int | None:
        """Seconds to wait, or None when the call may go ahead (and is counted)."""
        if self.forced_count > 0:
            self.forced_count -= 1
            return self.forced_retry_after
        if not self.enabled:
            return None
        now = self._clock()
        if private:
            bucket = self._buckets.setdefault(chat_id, _Bucket(PRIVATE_BURST, now))
            bucket.tokens = min(
                PRIVATE_BURST, bucket.tokens + (now - bucket.updated) * PRIVATE_PER_SECOND
            )
            bucket.updated = now
            if bucket.tokens < 1:
                return max(1, math.ceil((1 - bucket.tokens) / PRIVATE_PER_SECOND))
            bucket.tokens -= 1
            return None
        sends = self._group_sends.setdefault(chat_id, deque())
        while sends and now - sends[0] >= 60:
            sends.popleft()
        if len(sends) >= GROUP_PER_MINUTE:
            return max(1, math.ceil(60 - (now - sends[0])))
        sends.append(now)
        return None

    def reset(self) -> None:
        self._buckets.clear()
        self._group_sends.clear()
        self.forced_count = 0
