"""A button names the deployment it was posted for: cancel, promote and rollback then
act only on that one, and a stale button is refused (and audited) without effect."""

from __future__ import annotations

import redis

from jobs import api
from jobs.lease import Lease
from jobs.queue import queue
from jobs.records import RecordStore, State
from jobs.streams import read_audit
from jobs.work import CANCEL_KEY, lease_holder
from tests.jobs.test_api import SPECS


def ended(r: redis.Redis, version: str, state: State) -> str:
    """A staging deployment of `version` that ran and ended in `state`."""
    answer = api.request_deployment(r, SPECS, app=None, env="staging", version=version, who="a")
    assert answer.deployment is not None
    store = RecordStore(r)
    store.advance(answer.deployment, "running", phase="prepare")
    record = store.advance(answer.deployment, state)
    Lease(r, record.app, record.env).release(lease_holder(record))
    return answer.deployment


def test_cancel_and_promote_act_only_on_the_named_deployment(r: redis.Redis) -> None:
    old = ended(r, "v1.0.1", "live")
    answer = api.request_deployment(r, SPECS, app=None, env="staging", version="v1.0.2", who="a")
    new = answer.deployment
    assert new is not None
    stale = api.cancel(r, SPECS, app=None, env="staging", who="b", deployment=old)
    assert (stale.accepted, stale.reason) == (
        False,
        f"cannot cancel {old}: it is no longer in progress",
    )
    assert not r.exists(CANCEL_KEY.format(id=new))
    held = api.promote(r, SPECS, app=None, env="staging", who="b", deployment=old)
    assert held.reason == f"cannot promote {old}: it is no longer in progress"
    entry = read_audit(r)[-1]
    assert (entry.action, entry.result, entry.target) == ("promote", "refused", old)
    assert api.cancel(r, SPECS, app=None, env="staging", who="b", deployment=new).accepted


def test_roll_back_from_a_button_only_while_its_deployment_is_the_live_one(r: redis.Redis) -> None:
    first = ended(r, "v1.0.1", "live")
    # Requests that left the live release as it was do not make the button stale.
    for version, state in (("v1.0.2", "not_switched"), ("v1.0.3", "rolled_back")):
        ended(r, version, state)
    queue(r).empty()
    still = api.rollback(r, SPECS, app=None, env="staging", who="b", deployment=first)
    assert still.accepted and still.deployment is not None
    rolling = RecordStore(r).advance(still.deployment, "cancelled")
    Lease(r, rolling.app, rolling.env).release(lease_holder(rolling))

    second = ended(r, "v1.0.4", "live")
    stale = api.rollback(r, SPECS, app=None, env="staging", who="b", deployment=first)
    assert stale.reason == f"cannot roll back {first}: {second} came after it on shop/staging"
    failed = ended(r, "v1.0.5", "not_switched")
    own = api.rollback(r, SPECS, app=None, env="staging", who="b", deployment=failed)
    assert own.reason == f"cannot roll back {failed}: it failed before the switch"
    assert [(e.action, e.result) for e in read_audit(r)[-1:]] == [("rollback", "refused")]
    assert RecordStore(r).recent("shop", "staging")[0].id == failed  # nothing was queued
