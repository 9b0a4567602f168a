"""The jobs API against a real Redis, without workers: what each call accepts, refuses,
records, queues, schedules and audits. (Workers running the queued jobs on the real
test bed are tests/e2e/test_workers.py.)"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rq.registry import ScheduledJobRegistry

from deploy.events import Kind
from deploy.spec import Spec, parse_spec
from jobs import api
from jobs.lease import Lease
from jobs.queue import job_id, queue
from jobs.records import RecordStore
from jobs.streams import read_audit, read_events
from jobs.work import expire


def make_spec(app: str = "shop", **policy: Any) -> Spec:
    host = {"name": "h1", "address": "10.0.0.1"}
    env = {"public_url": "http://10.0.0.1", "ssh": {"key": "k", "known_hosts": "kh"}}
    return parse_spec(
        {
            "app": app,
            "image": f"registry.example.com/acme/{app}",
            "default_environment": "production",
            "environments": {
                "production": {**env, "hosts": [host], **policy},
                "staging": {
                    **env,
                    "hosts": [{"name": "s1", "address": "10.0.1.1"}],
                    "approval": "none",
                },
            },
        }
    )


SPECS = {"shop": make_spec(promote="manual", promote_timeout=600)}


def scheduled(r: redis.Redis) -> list[str]:
    return list(ScheduledJobRegistry(queue=queue(r)).get_job_ids())


def test_production_waits_for_someone_else_to_approve(r: redis.Redis) -> None:
    answer = api.request_deployment(r, SPECS, app=None, env=None, version="v1.0.1", who="alice")
    assert answer.accepted and answer.state == "awaiting_approval"
    assert answer.deployment is not None and answer.deployment.startswith("production-v1.0.1-")
    assert queue(r).count == 0  # nothing runs before the approval
    assert scheduled(r) == [job_id(answer.deployment, "expire-awaiting_approval")]

    own = api.approve(r, answer.deployment, "alice")
    assert not own.accepted and own.reason == "alice asked for it; someone else has to approve it"
    assert queue(r).count == 0

    approved = api.approve(r, answer.deployment, "bob")
    assert approved.accepted and approved.state == "queued"
    record = RecordStore(r).load(answer.deployment)
    assert record is not None and (record.state, record.approved_by) == ("queued", "bob")
    assert queue(r).job_ids == [job_id(answer.deployment, "prepare")]
    assert scheduled(r) == []  # the approval timeout is taken back
    states = [e.state for _, e in read_events(r) if e.kind == Kind.request]
    assert states == ["requested", "awaiting_approval", "queued"]
    trail = [(e.who, e.action, e.result) for e in read_audit(r)]
    assert trail == [
        ("alice", "deploy", "accepted"),
        ("alice", "approve", "refused"),
        ("bob", "approve", "accepted"),
    ]


def test_a_rejected_request_ends_and_frees_the_environment(r: redis.Redis) -> None:
    first = api.request_deployment(r, SPECS, app=None, env=None, version="v1.0.1", who="alice")
    assert first.deployment is not None
    held = api.request_deployment(r, SPECS, app=None, env=None, version="v1.0.2", who="carol")
    assert not held.accepted
    assert held.reason == f"shop/production is being deployed: {first.deployment} by alice"

    rejected = api.reject(r, first.deployment, "bob", "not during the sale")
    assert rejected.accepted
    record = RecordStore(r).load(first.deployment)
    assert record is not None and record.state == "rejected"
    assert record.transitions[-1].note == "not during the sale"
    assert Lease(r, "shop", "production").holder() is None
    assert queue(r).count == 0 and scheduled(r) == []
    again = api.approve(r, first.deployment, "bob")
    assert again.reason == f"cannot approve {first.deployment}: it was rejected"


def test_nobody_approving_in_time_cancels_the_request(r: redis.Redis) -> None:
    answer = api.request_deployment(r, SPECS, app=None, env=None, version="v1.0.1", who="alice")
    assert answer.deployment is not None
    expire(r, answer.deployment, "awaiting_approval", 3600)  # what RQ's scheduler runs
    record = RecordStore(r).load(answer.deployment)
    assert record is not None and record.state == "cancelled"
    assert record.transitions[-1].note == "no approval within 3600 s"
    assert Lease(r, "shop", "production").holder() is None
    assert read_audit(r)[-1].action == "expire"


@pytest.mark.parametrize(
    ("where", "version", "reason"),
    [
        ({}, "1.0", "version '1.0' is not semver; expected e.g. v1.0.1 or 1.2.0-rc.1"),
        (
            {},
            "v1.0.1; rm -rf /",
            "version 'v1.0.1; rm -rf /' is not semver; expected e.g. v1.0.1 or 1.2.0-rc.1",
        ),
        ({"env": "prod"}, "v1.0.1", "unknown environment 'prod' (known: production, staging)"),
        ({"app": "ledger"}, "v1.0.1", "unknown app 'ledger' (known: shop)"),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(
    r: redis.Redis, where: dict[str, str], version: str, reason: str
) -> None:
    answer = api.request_deployment(
        r, SPECS, **{"app": None, "env": None, **where}, version=version, who="alice"
    )
    assert not answer.accepted and answer.deployment is None
    assert answer.reason == reason
    assert [e.result for e in read_audit(r)] == ["refused"]
    assert read_audit(r)[0].reason == answer.reason
    assert sorted(k.decode() for k in r.scan_iter()) == ["greenlight:audit"]  # nothing else


def test_staging_needs_no_approval_and_is_queued_at_once(r: redis.Redis) -> None:
    answer = api.request_deployment(
        r, SPECS, app="shop", env="staging", version="v2.0.0", who="alice", skip_tests=True
    )
    assert answer.accepted and answer.state == "queued"
    record = RecordStore(r).load(answer.deployment or "")
    assert record is not None and record.deployment is not None
    assert record.deployment.skip_tests and record.approved_by is None
    assert queue(r).job_ids == [job_id(answer.deployment or "", "prepare")]


def test_a_sticky_lock_needs_a_reason_and_force_to_lift_someone_elses(r: redis.Redis) -> None:
    where: dict[str, Any] = {"app": None, "env": "staging"}
    assert api.lock(r, SPECS, **where, who="alice", reason="  ").reason == (
        "say why: a lock needs a reason others can read"
    )
    assert api.lock(r, SPECS, **where, who="alice", reason="db  migration").accepted
    again = api.lock(r, SPECS, **where, who="bob", reason="me too")
    assert again.reason == "shop/staging is already locked by alice: db migration"
    blocked = api.request_deployment(r, SPECS, **where, version="v1.0.1", who="bob")
    assert blocked.reason == "shop/staging is locked by alice: db migration"

    lift = api.unlock(r, SPECS, **where, who="bob")
    assert not lift.accepted and lift.reason.endswith(
        "db migration; lifting someone else's lock needs force"
    )
    assert api.unlock(r, SPECS, **where, who="bob", force=True).accepted
    assert api.unlock(r, SPECS, **where, who="bob").reason == "shop/staging is not locked"
    forced = [e for e in read_audit(r) if e.action == "unlock" and e.result == "accepted"]
    assert forced[0].reason == "forced: lifted alice's lock (db migration)"
    assert api.request_deployment(r, SPECS, **where, version="v1.0.1", who="bob").accepted


def test_cancel_ends_a_request_still_awaiting_approval(r: redis.Redis) -> None:
    nothing = api.cancel(r, SPECS, app=None, env=None, who="alice")
    assert nothing.reason == "nothing to cancel on shop/production: no deployment is in progress"
    answer = api.request_deployment(r, SPECS, app=None, env=None, version="v1.0.1", who="alice")
    cancelled = api.cancel(r, SPECS, app=None, env=None, who="alice")
    assert cancelled.accepted and cancelled.state == "cancelled"
    assert RecordStore(r).load(answer.deployment or "").state == "cancelled"  # type: ignore[union-attr]
    assert scheduled(r) == [] and queue(r).count == 0
    assert Lease(r, "shop", "production").holder() is None


def test_promote_refuses_what_is_not_held(r: redis.Redis) -> None:
    answer = api.request_deployment(r, SPECS, app=None, env="staging", version="v1.0.1", who="al")
    refused = api.promote(r, SPECS, app=None, env="staging", who="al")
    assert refused.reason == f"{answer.deployment} is queued; it is not held"


def test_a_rollback_is_queued_under_its_real_id_without_approval(r: redis.Redis) -> None:
    answer = api.rollback(r, SPECS, app=None, env=None, who="alice")
    assert answer.accepted and answer.state == "queued"
    assert answer.deployment is not None and answer.deployment.startswith("production-rollback-")
    assert queue(r).job_ids == [job_id(answer.deployment, "plan")]
    bad = api.rollback(r, SPECS, app=None, env="staging", who="alice", to="v1.0.1 && reboot")
    assert bad.reason == (
        "version 'v1.0.1 && reboot' is not semver; expected e.g. v1.0.1 or 1.2.0-rc.1"
    )


def test_ids_carry_the_app_when_there_are_several(r: redis.Redis) -> None:
    specs = {"shop": make_spec(), "ledger": make_spec("ledger")}
    answer = api.request_deployment(
        r, specs, app="ledger", env="staging", version="v1.0.1", who="a"
    )
    assert answer.deployment is not None and answer.deployment.startswith("ledger-staging-v1.0.1-")
    unnamed = api.request_deployment(r, specs, app=None, env=None, version="v1.0.1", who="a")
    assert unnamed.reason == "choose an app with --app (ledger, shop)"


def test_targets_and_history_show_policy_locks_and_requests(r: redis.Redis) -> None:
    first = api.request_deployment(r, SPECS, app=None, env="staging", version="v1.0.1", who="a")
    api.lock(r, SPECS, app=None, env="production", who="b", reason="audit week")
    found = {(t.app, t.env): t for t in api.targets(r, SPECS)}
    production, staging = found["shop", "production"], found["shop", "staging"]
    assert (production.default, production.approval, production.promote) == (
        True,
        "required",
        "manual",
    )
    assert production.locked is not None and production.locked.reason == "audit week"
    assert (staging.default, staging.approval, staging.deploying) == (
        False,
        "none",
        first.deployment,
    )
    records = api.history(r, SPECS, app=None, env="staging")
    assert [rec.id for rec in records] == [first.deployment]
