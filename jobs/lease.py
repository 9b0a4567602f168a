"""One deployment per (app, environment) at a time, across processes and machines: a
Redis lease with an owner token, renewed while the deployment runs.

The lease refuses fast and says who holds it; the host lock and epoch stay the truth.
A sticky lock (`/lock REASON`) blocks every new lease until someone unlocks it.
"""

from __future__ import annotations

from datetime import datetime

import redis
from pydantic import BaseModel, Field

from deploy.state import now
from jobs import metrics

LEASE_KEY = "greenlight:lease:{app}:{env}"
STICKY_KEY = "greenlight:sticky:{app}:{env}"

# Renew or release only while the token is still ours: a lease that expired and was
# taken by someone else is never extended or deleted by the old owner.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Holder(BaseModel):
    token: str
    deployment: str
    who: str
    since: datetime = Field(default_factory=now)


class Sticky(BaseModel):
    who: str
    reason: str
    since: datetime = Field(default_factory=now)


class LeaseHeld(Exception):
    """Another deployment (or a sticky lock) holds this app and environment."""


class Lease:
    def __init__(self, connection: redis.Redis, app: str, env: str) -> None:
        self.redis = connection
        self.key = LEASE_KEY.format(app=app, env=env)
        self.sticky_key = STICKY_KEY.format(app=app, env=env)
        self.app, self.env = app, env
        self.where = f"{app}/{env}"

    def acquire(self, holder: Holder, ttl: float) -> None:
        """Take the lease for `ttl` seconds, or LeaseHeld saying who has it."""
        sticky = self.sticky()
        if sticky is not None:
            metrics.lease_refused(self.app, self.env, "locked")
            raise LeaseHeld(f"{self.where} is locked by {sticky.who}: {sticky.reason}")
        value = holder.model_dump_json()
        if not self.redis.set(self.key, value, nx=True, px=int(ttl * 1000)):
            current = self.holder()
            if current is not None and current.token == holder.token:
                return  # a retried job holds it already
            metrics.lease_refused(self.app, self.env, "busy")
            who = f"{current.deployment} by {current.who}" if current else "someone"
            raise LeaseHeld(f"{self.where} is being deployed: {who}")

    def renew(self, holder: Holder, ttl: float) -> bool:
        """Extend the lease; False when it is no longer ours (expired, or broken)."""
        value = holder.model_dump_json()
        return bool(self.redis.eval(_RENEW, 1, self.key, value, int(ttl * 1000)))

    def release(self, holder: Holder) -> bool:
        return bool(self.redis.eval(_RELEASE, 1, self.key, holder.model_dump_json()))

    def holder(self) -> Holder | None:
        raw = self.redis.get(self.key)
        return Holder.model_validate_json(raw) if raw else None

    def lock(self, sticky: Sticky) -> None:
        self.redis.set(self.sticky_key, sticky.model_dump_json())

    def unlock(self) -> Sticky | None:
        current = self.sticky()
        self.redis.delete(self.sticky_key)
        return current

    def sticky(self) -> Sticky | None:
        raw = self.redis.get(self.sticky_key)
        return Sticky.model_validate_json(raw) if raw else None
