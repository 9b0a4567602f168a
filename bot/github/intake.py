"""`POST /webhooks/github`: verify, triage, deduplicate and queue a delivery, then answer.

The answer comes within milliseconds and never waits for the work: a delivery that
asks for something is put on a Redis Stream (`greenlight:github:deliveries`), which
`bot.github.relay` consumes. In order:

- a body over 1 MiB: 413, read no further;
- `X-Hub-Signature-256` missing or not the HMAC-SHA256 of the raw body under
  GREENLIGHT_GITHUB_SECRET (compared in constant time): 401;
- a body that is not a JSON object, or no usable `X-GitHub-Delivery`: 400;
- `ping`: 200; an event or action Greenlight does not act on: 202, ignored;
- a repository no spec names, a tag that is not a version: 422, refused;
- work: queued under its delivery id, once: a redelivery (GitHub keeps the id) or a
  concurrent copy answers 200 "duplicate" and queues nothing.

Every delivery leaves an audit entry, whatever its answer. Only queued deliveries are
remembered, so a refused one can be redelivered after the spec is fixed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from typing import Literal

import redis
from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from bot.github.events import Deploy, Edited, Ignore, Refuse, Withdrawn, triage
from deploy.spec import Spec
from jobs.streams import AuditEntry, audit

PATH = "/webhooks/github"
MAX_BODY = 1024**2
SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERIES_KEY = "greenlight:github:deliveries"
SEEN_KEY = "greenlight:github:seen:{delivery}"
SEEN_DAYS = 30  # GitHub lets a delivery be redelivered for 3 days; kept well beyond
DELIVERIES_KEPT = 100_000
_DELIVERY = re.compile(r"[A-Za-z0-9-]{1,64}")
_EVENT = re.compile(r"[a-z_]{1,64}")
log = logging.getLogger("greenlight.bot.github")

# Remember the delivery and queue its work in one step, or do neither: ten copies of a
# delivery arriving at once queue exactly one.
_QUEUE_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'delivery', ARGV[2])
end
return false
"""


class Delivery(BaseModel):
    """One queued delivery: what triage made of it, and where it came from."""

    id: str
    event: str
    work: Deploy | Edited | Withdrawn


DELIVERY = TypeAdapter(Delivery)
Result = Literal["accepted", "refused", "ignored"]


class GitHubIntake:
    def __init__(self, secret: str, connection: redis.Redis, specs: dict[str, Spec]) -> None:
        self._secret = secret.encode()
        self.redis = connection
        self.specs = specs
        self._queue_once = connection.register_script(_QUEUE_ONCE)

    def register(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        delivery = request.headers.get("X-GitHub-Delivery", "")
        shown = delivery if _DELIVERY.fullmatch(delivery) else "?"
        if (request.content_length or 0) > MAX_BODY:
            return await self._answer(413, shown, "refused", "the body is over 1 MiB")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return await self._answer(413, shown, "refused", "the body is over 1 MiB")
        if not self._signed(body, request.headers.get(SIGNATURE_HEADER)):
            given = "no" if SIGNATURE_HEADER not in request.headers else "a wrong"
            log.warning(
                "github webhook: refused a POST from %s: %s signature", request.remote, given
            )
            return await self._answer(401, shown, "refused", f"{given} {SIGNATURE_HEADER}")
        event = request.headers.get("X-GitHub-Event", "")
        if shown == "?" or not _EVENT.fullmatch(event):
            return await self._answer(
                400, shown, "refused", "X-GitHub-Delivery or X-GitHub-Event is missing or malformed"
            )
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            return await self._answer(400, shown, "refused", "the body is not a JSON object")
        if event == "ping":
            return await self._answer(200, shown, "accepted", "ping")
        found = triage(event, payload, self.specs)
        what = f"{event} from {_repository(payload)}"
        if isinstance(found, Refuse):
            return await self._answer(422, shown, "refused", f"{what}: {found.reason}")
        if isinstance(found, Ignore):
            return await self._answer(202, shown, "ignored", f"{what}: {found.reason}")
        queued = await asyncio.to_thread(
            self._queue, Delivery(id=delivery, event=event, work=found)
        )
        if not queued:
            return await self._answer(200, shown, "ignored", f"{what}: a duplicate delivery")
        return await self._answer(202, shown, "accepted", f"{what}: queued ({found.action})")

    def _signed(self, body: bytes, given: str | None) -> bool:
        expected = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        offered = (given or "").encode("utf-8", "surrogateescape")
        return given is not None and hmac.compare_digest(offered, expected.encode())

    def _queue(self, delivery: Delivery) -> bool:
        entry = self._queue_once(
            keys=[SEEN_KEY.format(delivery=delivery.id), DELIVERIES_KEY],
            args=[SEEN_DAYS * 86_400, delivery.model_dump_json(), DELIVERIES_KEPT],
        )
        return entry is not None

    async def _answer(
        self, status: int, delivery: str, result: Result, reason: str
    ) -> web.Response:
        entry = AuditEntry(
            who="github",
            action="webhook",
            target=f"delivery:{delivery}",
            result=result,
            reason=reason[:500],
        )
        await asyncio.to_thread(audit, self.redis, entry)
        body = {"ok": status < 300, "result": result, "reason": reason[:500]}
        return web.json_response(body, status=status)


def _repository(payload: dict[str, object]) -> str:
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    return repr(name[:201]) if isinstance(name, str) else "an unnamed repository"
