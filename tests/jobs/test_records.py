"""A request's record walks its life forward only, whoever touches it."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from deploy.deployment import Deployment
from jobs.records import DeploymentRecord, InvalidTransition, RecordStore


def request(store: RecordStore, id_: str = "shop-production-v1.0.1-x") -> DeploymentRecord:
    return store.create(
        DeploymentRecord(
            id=id_, app="shop", env="production", version="v1.0.1", requested_by="alice"
        )
    )


def test_a_request_walks_to_live_and_records_who_and_when(r: redis.Redis) -> None:
    store = RecordStore(r)
    request(store)
    store.advance("shop-production-v1.0.1-x", "awaiting_approval")
    store.advance("shop-production-v1.0.1-x", "queued", by="bob")
    store.advance("shop-production-v1.0.1-x", "running", phase="prepare")
    engine = Deployment(id="production-v1.0.1-x", env="production", version="v1.0.1", who="alice")
    engine.completed = ["prepare"]
    store.save_engine("shop-production-v1.0.1-x", engine)
    store.advance("shop-production-v1.0.1-x", "running", phase="preflight")
    record = store.advance("shop-production-v1.0.1-x", "live")
    assert record.final and record.approved_by == "bob"
    assert [(t.state, t.phase) for t in record.transitions] == [
        ("requested", None),
        ("awaiting_approval", None),
        ("queued", None),
        ("running", "prepare"),
        ("running", "preflight"),
        ("live", None),
    ]
    loaded = store.load("shop-production-v1.0.1-x")
    assert loaded == record and loaded.deployment and loaded.deployment.completed == ["prepare"]


@pytest.mark.parametrize(
    ("path", "to"),
    [
        (["awaiting_approval", "rejected"], "queued"),  # a rejected request stays rejected
        (["queued", "running"], "awaiting_approval"),
        (["queued", "running", "live"], "rolled_back"),
        ([], "live"),
    ],
)
def test_a_transition_its_life_does_not_have_is_refused(
    r: redis.Redis, path: list[str], to: str
) -> None:
    store = RecordStore(r)
    request(store)
    for state in path:
        store.advance("shop-production-v1.0.1-x", state)  # type: ignore[arg-type]
    before = store.load("shop-production-v1.0.1-x")
    with pytest.raises(InvalidTransition, match=r"cannot become"):
        store.advance("shop-production-v1.0.1-x", to)  # type: ignore[arg-type]
    assert store.load("shop-production-v1.0.1-x") == before


def test_two_processes_deciding_at_once_cannot_both_win(r: redis.Redis) -> None:
    # An approval and a rejection pressed at the same moment: exactly one takes effect.
    store = RecordStore(r)
    request(store)
    store.advance("shop-production-v1.0.1-x", "awaiting_approval")

    def decide(to: str) -> str:
        try:
            return store.advance("shop-production-v1.0.1-x", to, by=to).state  # type: ignore[arg-type]
        except InvalidTransition:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(decide, ["queued", "rejected"] * 4))
    assert sorted(r for r in results if r != "refused") in (["queued"], ["rejected"])
    assert len(store.load("shop-production-v1.0.1-x").transitions) == 3  # type: ignore[union-attr]


def test_an_id_is_created_once(r: redis.Redis) -> None:
    store = RecordStore(r)
    request(store)
    with pytest.raises(ValueError, match="already exists"):
        request(store)
