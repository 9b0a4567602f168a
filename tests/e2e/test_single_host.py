"""One production host, under continuous load through its proxy for the whole run."""

from __future__ import annotations

import json

from tests.e2e.conftest import FAST, Bed, assert_served


def test_bootstrap_verifies_before_the_proxy_points_at_it(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.0", config=spec)
    result = load.stop()
    assert run.code == 0, run.output
    assert run.has(r"backup skipped: nothing live yet")
    assert run.has(r"verify .*blue healthy") and run.has(r"smoke requests passed")
    assert bed.live(spec) == {"h1": "v1.0.0"}
    # Before the switch nothing was live (the proxy answers 502); from the first
    # answer of v1.0.0 on, not one request failed.
    first = result.first("v1.0.0")
    assert first is not None, result.describe()
    before = [s for s in result.samples if s.end < first.start]
    assert all(s.status == 502 for s in before), {s.status for s in before}
    assert_served(type(result)(result.after(first.start)))


def test_upgrade_has_zero_failed_requests_and_keeps_the_old_colour_warm(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "1.0.1", config=spec)
    assert run.code == 0, run.output
    result = load.stop()
    assert_served(result)
    assert result.versions["v1.0.0"] > 0 and result.versions["v1.0.1"] > 0
    # Once v1.0.1 answered, v1.0.0 never answered again.
    switched = result.first("v1.0.1")
    assert switched and not [s for s in result.after(switched.end) if s.version == "v1.0.0"]
    host = bed.status(spec)["hosts"][0]
    assert host["live"]["version"] == "v1.0.1" and host["live"]["color"] == "green"
    assert host["colors"]["blue"]["version"] == "v1.0.0"
    assert host["colors"]["blue"]["status"] == "running"  # warm, for a one-second rollback
    assert run.has(r"blue \(v1.0.0\) kept warm until \d\d:\d\d:\d\d UTC")
    backups = sorted((bed.app_dir("h1") / "backups").glob("pre-deploy-v1.0.1-*"))
    assert len(backups) == 1
    dump = json.loads((backups[0] / "db.json").read_text())
    assert dump  # a real dump of the live database, not an empty file
    assert (backups[0] / "containers.json").read_text().strip()
    assert run.has(r"backup .*pre-deploy-v1.0.1-\d{8}_\d{6}: \d+ bytes, sha256 [0-9a-f]{12}")
    history = bed.status(spec)["history"]
    assert [(h["version"], h["result"], h["who"]) for h in history[:2]] == [
        ("v1.0.1", "live", "e2e"),
        ("v1.0.0", "live", "e2e"),
    ]


def test_unhealthy_release_never_receives_traffic(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.2", config=spec)
    result = load.stop()
    assert run.code == 1, run.output
    assert_served(result)
    assert result.versions["v1.0.2"] == 0 and result.versions["v1.0.1"] == len(result.samples)
    assert bed.live(spec) == {"h1": "v1.0.1"}
    assert run.has(r"stage failed on h1") and run.has(r"container logs:")
    assert run.has(r"failed before the switch; production untouched")
    host = bed.status(spec)["hosts"][0]
    assert host["bad_versions"] == ["v1.0.2"]
    assert host["colors"]["green"]["status"] == "removed"


def test_release_that_breaks_under_traffic_is_rolled_back_by_the_stability_window(
    bed: Bed,
) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    slow = bed.spec(name="window", stability={"duration": 10, "interval": 1})
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.3", config=slow)
    result = load.stop()
    assert run.code == 1, run.output
    assert run.has(r"monitor failed: unstable: ") and run.has(r"traffic is back on v1.0.1")
    assert bed.live(slow) == {"h1": "v1.0.1"}
    # Only v1.0.3's own answers failed, and only inside the detection window.
    assert_served(result, broken="v1.0.3")
    broken = [s for s in result.failures]
    assert broken, "v1.0.3 should have failed some requests before it was caught"
    assert broken[-1].end - broken[0].start < 5.0
    back = result.first("v1.0.1", after=broken[-1].end)
    assert back is not None
    assert not [s for s in result.after(back.end) if s.version == "v1.0.3"]


def test_failed_migration_aborts_before_the_switch(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.4", config=spec)
    assert_served(load.stop())
    assert run.code == 1, run.output
    assert run.has(r"migrate hook failed \(exit 1\)") and run.has(r"0004_broken failed")
    assert bed.live(spec) == {"h1": "v1.0.1"}


def test_slow_release_is_refused_by_smoke_tests(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.5", config=spec)
    result = load.stop()
    assert run.code == 1, run.output
    assert run.has(r"smoke failed on h1: .*took 1[5-9]\d\d ms, bound is 1000 ms")
    assert_served(result)
    assert result.versions["v1.0.5"] == 0
    assert bed.live(spec) == {"h1": "v1.0.1"}


def test_rollback_on_demand_returns_to_the_previous_version(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("rollback", config=spec)
    result = load.stop()
    assert run.code == 0, run.output
    assert_served(result)
    assert bed.live(spec) == {"h1": "v1.0.0"}
    # v1.0.1 is now recorded as bad: a second rollback has nothing good to go to.
    again = bed.greenlight("rollback", config=spec)
    assert again.code == 2, again.output
    assert again.has(
        r"rollback of production refused: h1: no good release before v1.0.0 is known here "
        r"\(the previous one is recorded as bad\)"
    )
    assert bed.live(spec) == {"h1": "v1.0.0"}
    assert bed.status(spec)["hosts"][0]["colors"]["green"]["status"] == "stopped"


def test_rollback_with_nothing_to_return_to_is_refused(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    empty = bed.greenlight("rollback", config=spec)
    assert empty.code == 2 and empty.has(r"nothing is live, so there is nothing to roll back")
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    only = bed.greenlight("rollback", config=spec)
    assert only.code == 2 and only.has(r"no good release before v1.0.0 is known here")
    unknown = bed.greenlight("rollback", "--to", "v0.9.0", config=spec)
    assert unknown.code == 2 and unknown.has(
        r"rollback of production to v0.9.0 refused: h1: v0.9.0 was never live here; use deploy"
    )


def test_a_switch_that_does_not_take_effect_is_switched_back(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    # A reload command that does nothing: the proxy keeps serving v1.0.0, so the
    # confirmation through the proxy must fail and the upstream must be put back.
    inert = bed.spec(name="inert", proxy={"reload": ["true"], "confirm_timeout": 2}, **FAST)
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.1", config=inert)
    result = load.stop()
    assert run.code == 1, run.output
    assert run.has(r"switch failed on h1: .*did not confirm v1.0.1 within 2 s")
    assert run.has(r"traffic is back on v1.0.0")
    assert_served(result)
    assert result.versions["v1.0.1"] == 0
    host = bed.status(spec)["hosts"][0]
    assert host["live"]["version"] == "v1.0.0"
    assert host["bad_versions"] == []  # the proxy failed, not the release
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
