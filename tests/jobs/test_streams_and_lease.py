"""The event stream, the audit trail and the lease, on a real Redis."""

import asyncio

import pytest
import redis

from deploy.events import Kind, event
from jobs.lease import Holder, Lease, LeaseHeld, Sticky
from jobs.streams import AuditEntry, RedisSink, audit, read_audit, read_events


def test_events_are_read_back_typed_from_any_id(r: redis.Redis) -> None:
    sink = RedisSink(r)
    sent = [
        event(Kind.phase_started, deployment="d1", phase="stage"),
        event(Kind.phase_finished, deployment="d1", phase="stage", seconds=1.5),
        event(Kind.output, deployment="d1", message="pulled"),
    ]
    for e in sent:
        asyncio.run(sink.emit(e))
    everything = read_events(r)
    assert [e for _, e in everything] == sent
    after_first = read_events(r, after=everything[0][0])
    assert [e for _, e in after_first] == sent[1:]


def test_the_audit_trail_keeps_every_entry_in_order(r: redis.Redis) -> None:
    for i in range(120):
        audit(
            r,
            AuditEntry(
                who="mallory" if i % 2 else "alice",
                action="deploy",
                target="shop/production",
                result="refused" if i % 2 else "accepted",
                reason="not a deployer" if i % 2 else "",
            ),
        )
    assert r.xlen("greenlight:audit") == 120
    last = read_audit(r, last=3)
    assert [(e.who, e.result) for e in last] == [
        ("mallory", "refused"),
        ("alice", "accepted"),
        ("mallory", "refused"),
    ]


def test_one_deployment_per_app_and_environment(r: redis.Redis) -> None:
    lease = Lease(r, "shop", "production")
    alice = Holder(token="t1", deployment="shop-production-v1.0.1-x", who="alice")
    lease.acquire(alice, ttl=30)
    lease.acquire(alice, ttl=30)  # the same owner again: a retried job
    bob = Holder(token="t2", deployment="shop-production-v1.0.2-y", who="bob")
    with pytest.raises(LeaseHeld, match=r"shop/production is being deployed: .*v1.0.1-x by alice"):
        lease.acquire(bob, ttl=30)
    Lease(r, "shop", "staging").acquire(bob, ttl=30)  # another environment is free
    Lease(r, "ledger", "production").acquire(bob, ttl=30)  # so is another app
    assert not lease.renew(bob, ttl=30) and not lease.release(bob)  # not bob's to touch
    assert lease.renew(alice, ttl=30) and lease.release(alice)
    lease.acquire(bob, ttl=30)


def test_an_expired_lease_is_never_renewed_by_its_old_owner(r: redis.Redis) -> None:
    lease = Lease(r, "shop", "production")
    dead = Holder(token="dead", deployment="d-old", who="worker-1")
    lease.acquire(dead, ttl=0.05)
    asyncio.run(asyncio.sleep(0.1))
    alive = Holder(token="alive", deployment="d-new", who="worker-2")
    lease.acquire(alive, ttl=30)
    assert not lease.renew(dead, ttl=30) and not lease.release(dead)
    assert lease.holder() == alive


def test_a_sticky_lock_blocks_deploys_until_unlocked(r: redis.Redis) -> None:
    lease = Lease(r, "shop", "production")
    lease.lock(Sticky(who="carol", reason="database migration window"))
    with pytest.raises(LeaseHeld, match="locked by carol: database migration window"):
        lease.acquire(Holder(token="t", deployment="d", who="alice"), ttl=30)
    assert lease.unlock() is not None
    lease.acquire(Holder(token="t", deployment="d", who="alice"), ttl=30)
