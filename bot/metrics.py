"""The bot's Prometheus metrics, and `GET /metrics` for its HTTP server (bot/web.py).

The bot is one long-lived process, so it serves prometheus-client's default registry:
its own metrics below, and the jobs layer's that its process records (a lease refused
to a /deploy from the chat, a request rejected with a button; see jobs/metrics.py).

- Telegram: every Bot API call and every failure, by method and kind, counted by a
  session middleware inside `ObeyRetryAfter`, so each attempt a 429 costs is counted.
- The event stream: how old each event is when the bot's consumer reads it, and the
  consumer group's backlog (given but unacknowledged; not read yet), read from Redis
  at most once a second by the consumer's loop.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiohttp.typedefs import Handler
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler

METRICS_PATH = "/metrics"
BACKLOG_EVERY = 1.0  # seconds between two looks at the consumer group's backlog
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600)

# Most specific first: an entity too large is also a network error.
ERROR_KINDS: tuple[tuple[type[TelegramAPIError], str], ...] = (
    (TelegramRetryAfter, "too_many_requests"),
    (TelegramEntityTooLarge, "entity_too_large"),
    (TelegramNetworkError, "network"),
    (TelegramUnauthorizedError, "unauthorized"),
    (TelegramForbiddenError, "forbidden"),
    (TelegramNotFound, "not_found"),
    (TelegramConflictError, "conflict"),
    (TelegramMigrateToChat, "migrate_to_chat"),
    (TelegramBadRequest, "bad_request"),
    (TelegramServerError, "server_error"),
)

TELEGRAM_CALLS = Counter(
    "greenlight_telegram_requests", "Bot API calls made (each attempt), by method.", ["method"]
)
TELEGRAM_ERRORS = Counter(
    "greenlight_telegram_errors",
    "Bot API calls that failed, by method and kind (too_many_requests: a 429).",
    ["method", "kind"],
)
EVENT_LAG = Histogram(
    "greenlight_bot_event_lag_seconds",
    "From an event's time (as the worker stamped it) to the bot's consumer reading it.",
    buckets=LAG_BUCKETS,
)
EVENTS_PENDING = Gauge(
    "greenlight_bot_events_pending",
    "Event stream entries delivered to the bot's consumer group and not acknowledged yet.",
)
EVENTS_UNREAD = Gauge(
    "greenlight_bot_events_unread",
    "Event stream entries the bot's consumer group has not read yet.",
)


def metrics_handler() -> Handler:
    """The aiohttp handler prometheus-client provides, over this process's registry."""
    return make_aiohttp_handler(REGISTRY)


def error_kind(exc: TelegramAPIError) -> str:
    return next((kind for cls, kind in ERROR_KINDS if isinstance(exc, cls)), "other")


class CountTelegramCalls(BaseRequestMiddleware):
    """Counts every Bot API call and every failure; changes nothing."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        TELEGRAM_CALLS.labels(name).inc()
        try:
            return await make_request(bot, method)
        except TelegramAPIError as exc:
            TELEGRAM_ERRORS.labels(name, error_kind(exc)).inc()
            raise


def event_read(at: float) -> None:
    """The consumer read an event stamped `at` (epoch seconds, the worker's clock)."""
    EVENT_LAG.observe(max(0.0, time.time() - at))


class Backlog:
    """The consumer group's backlog as two gauges, looked up at most every
    BACKLOG_EVERY seconds (the consumer's loop turns four times a second)."""

    def __init__(self, connection: redis.Redis, stream: str, group: str) -> None:
        self.redis = connection
        self.stream = stream
        self.group = group
        self.looked = 0.0

    def measure(self) -> None:
        if time.monotonic() - self.looked < BACKLOG_EVERY:
            return
        self.looked = time.monotonic()
        groups: Any = self.redis.xinfo_groups(self.stream)
        for info in groups:
            name = info.get("name")
            if (name.decode() if isinstance(name, bytes) else name) != self.group:
                continue
            EVENTS_PENDING.set(int(info.get("pending") or 0))
            lag = info.get("lag")  # None when Redis cannot tell (entries deleted)
            if lag is not None:
                EVENTS_UNREAD.set(int(lag))
