"""The bot's update queue: long polling with `getUpdates`, or delivery to a webhook."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from bot.emulator.errors import POLL_CONFLICT, WEBHOOK_CONFLICT

JsonObject = dict[str, object]

WEBHOOK_RETRY_SECONDS = 0.5


class UpdateQueue:
    """Pending updates, confirmed by `offset` as Telegram does."""

    def __init__(self) -> None:
        self.pending: list[JsonObject] = []
        self._next_update_id = 1
        self._arrived = asyncio.Event()
        self._poll_generation = 0
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self._delivery: asyncio.Task[None] | None = None

    def push(self, body: JsonObject) -> JsonObject:
        update: JsonObject = {"update_id": self._next_update_id, **body}
        self._next_update_id += 1
        self.pending.append(update)
        self._wake()
        return update

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()

    def drop_pending(self) -> None:
        self.pending.clear()

    async def get(self, offset: int | None, limit: int, timeout: float) -> list[JsonObject]:
        """Updates from `offset` on, waiting up to `timeout` seconds for the first one."""
        if self.webhook_url is not None:
            raise WEBHOOK_CONFLICT
        if offset is not None:
            if offset < 0:
                self.pending = self.pending[offset:]
            else:
                self.pending = [u for u in self.pending if int(str(u["update_id"])) >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        if not self.pending and timeout > 0:
            # A newer getUpdates wakes this one so it can answer 409, as Telegram does.
            self._wake()
            arrived = self._arrived
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), timeout)
            if generation != self._poll_generation:
                raise POLL_CONFLICT
            if self.webhook_url is not None:
                raise WEBHOOK_CONFLICT
        return self.pending[:limit]

    def set_webhook(self, url: str, secret: str | None) -> None:
        self.webhook_url = url
        self.webhook_secret = secret
        if self._delivery is None or self._delivery.done():
            self._delivery = asyncio.create_task(self._deliver())
        self._wake()

    async def delete_webhook(self) -> None:
        self.webhook_url = None
        self.webhook_secret = None
        await self.stop()

    async def stop(self) -> None:
        if self._delivery is not None:
            self._delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivery
            self._delivery = None

    async def _deliver(self) -> None:
        """POST each update in order; keep it queued until the webhook answers 2xx."""
        async with aiohttp.ClientSession() as session:
            while self.webhook_url is not None:
                if not self.pending:
                    await self._arrived.wait()
                    continue
                update = self.pending[0]
                headers = {}
                if self.webhook_secret:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret
                try:
                    async with session.post(
                        self.webhook_url,
                        json=update,
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as response:
                        delivered = 200 <= response.status < 300
                except (aiohttp.ClientError, TimeoutError):
                    delivered = False
                if delivered:
                    if self.pending and self.pending[0] is update:
                        self.pending.pop(0)
                else:
                    await asyncio.sleep(WEBHOOK_RETRY_SECONDS)
