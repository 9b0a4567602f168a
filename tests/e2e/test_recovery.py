"""Rollback always has somewhere to go, a killed switch never becomes an outage, and a
host with years of history deploys like a fresh one. Each under continuous load."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

import testbed
from testbed.paths import Host
from tests.e2e.conftest import FAST, Bed, assert_served


@pytest.mark.parametrize("failed", [("v1.0.2",), ("v1.0.2", "v1.0.4")])
def test_rollback_after_failed_candidates_lands_on_the_last_good_release(
    bed: Bed, failed: tuple[str, ...]
) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    for version in failed:  # each replaces the idle colour, fails, and is torn down
        run = bed.greenlight("deploy", version, config=spec)
        assert run.code == 1 and run.has(r"v1.0.0 is back in blue \(stopped\)"), run.output
    with bed.load("h1") as load:
        run = bed.greenlight("rollback", config=spec)
    result = load.stop()
    assert run.code == 0, run.output
    assert run.has(r"rollback of v1.0.0 to production: v1.0.0 is live")
    assert_served(result)
    assert result.versions["v1.0.0"] > 0
    assert bed.live(spec) == {"h1": "v1.0.0"}


def test_rollback_after_the_stability_window_rolled_a_candidate_back(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    window = bed.spec(name="window", stability={"duration": 10, "interval": 0.5}, drain=0.5)
    with bed.load("h1") as load:
        broken = bed.greenlight("deploy", "v1.0.3", config=window)
        assert broken.code == 1 and broken.has(r"traffic is back on v1.0.1"), broken.output
        run = bed.greenlight("rollback", config=spec)
    result = load.stop()
    assert run.code == 0, run.output
    assert_served(result, broken="v1.0.3")  # only v1.0.3's own answers failed
    assert bed.live(spec) == {"h1": "v1.0.0"}
    assert "v1.0.3" in bed.status(spec)["hosts"][0]["bad_versions"]


def test_rollback_to_a_release_no_colour_keeps_restores_it_from_its_image(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    for version in ("v1.0.0", "v1.0.1", "v1.1.0"):
        assert bed.greenlight("deploy", version, config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("rollback", "--to", "v1.0.0", config=spec)
    result = load.stop()
    assert run.code == 0, run.output
    assert run.has(r"v1.0.0 is no longer kept in green; restoring it from its image")
    assert_served(result)
    assert bed.live(spec) == {"h1": "v1.0.0"}


def test_a_warm_previous_release_is_a_reload_away(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    blue = bed.status(spec)["hosts"][0]["colors"]["blue"]
    assert (blue["version"], blue["status"]) == ("v1.0.0", "running")
    with bed.load("h1") as load:
        run = bed.greenlight("rollback", config=spec)
    assert_served(load.stop())
    assert run.code == 0 and not run.has(r"starting it"), run.output
    assert bed.live(spec) == {"h1": "v1.0.0"}


def test_a_stopped_previous_release_is_started_without_probing_it_first(bed: Bed) -> None:
    spec = bed.spec(keep_previous=0, **FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    assert bed.status(spec)["hosts"][0]["colors"]["blue"]["status"] == "stopped"
    with bed.load("h1") as load:
        run = bed.greenlight("rollback", config=spec)
    assert_served(load.stop())
    assert run.code == 0 and run.has(r"blue \(v1.0.0\) is not running; starting it"), run.output


# -- a controller killed in the middle of a switch ----------------------------------

# Each proxy command waits while a hold file exists (before or after it runs), and
# says so, so a test can freeze the switch at an exact step and kill it there.
HOLD = """
h="$HOME/greenlight-hold-$0"
hold() { [ -e "$h-$1" ] && touch "$h-$1-reached" && while [ -e "$h-$1" ]; do sleep 0.05; done; }
hold before
"$@" || exit
hold after
exit 0
"""
STEPS = {
    "written": ("test", "before"),
    "tested": ("reload", "before"),
    "reloaded": ("reload", "after"),
}


def held_spec(bed: Bed, hosts: tuple[str, ...]) -> Path:
    proxy = bed.base["proxy"]
    return bed.spec(
        hosts=hosts,
        name="held",
        proxy={
            "test": ["sh", "-c", HOLD, "test", *proxy["test"]],
            "reload": ["sh", "-c", HOLD, "reload", *proxy["reload"]],
        },
        **FAST,
    )


def hold_file(host: str, command: str, when: str) -> Path:
    return Host.named(host).home / f"greenlight-hold-{command}-{when}"


@pytest.mark.parametrize("hosts", [("h1",), ("h1", "h2", "h3")], ids=["1host", "3hosts"])
@pytest.mark.parametrize("step", list(STEPS))
def test_a_deploy_killed_mid_switch_is_reconciled_without_an_outage(
    bed: Bed, step: str, hosts: tuple[str, ...]
) -> None:
    spec = held_spec(bed, hosts)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    command, when = STEPS[step]
    holds = [hold_file(h, command, when) for h in hosts]
    with ExitStack() as stack:
        loads = bed.loads(stack, hosts)
        for hold in holds:
            hold.touch()
        killed = bed.start("deploy", "v1.0.1", config=spec)
        deadline = time.monotonic() + 120
        while not all(Path(f"{h}-reached").exists() for h in holds):
            assert time.monotonic() < deadline, "the switch never reached the hold"
            time.sleep(0.05)
        os.kill(killed.process.pid, signal.SIGKILL)
        killed.finish()
        for host in hosts:  # the host-side remnants die too: the state is frozen here
            user = Host.named(host).user
            subprocess.run(["pkill", "-9", "-u", user, "-f", "greenlight-hold"], check=False)
            subprocess.run(["pkill", "-9", "-u", user, "-f", "switch.json"], check=False)
        for hold in holds:
            hold.unlink()
            Path(f"{hold}-reached").unlink()
        status = bed.status(spec)["hosts"]
        assert all(h["switch"] and "unfinished switch to v1.0.1" in h["switch"] for h in status)
        # The killed command's lock is not left looking fresh: its process is gone.
        assert all("ORPHANED: its process" in h["lock"] for h in status), status
        assert all("greenlight break-lock --env production --yes" in h["lock"] for h in status)
        assert bed.greenlight("break-lock", "--yes", config=spec).code == 0
        failing = bed.greenlight("deploy", "v1.0.2", config=spec)
        assert failing.code == 1 and failing.has(r"production untouched"), failing.output
        assert failing.has(r"was left unfinished; the proxy serves v1.0.[01]; putting back v1.0.0")
        assert bed.live(spec) == dict.fromkeys(hosts, "v1.0.0")
        good = bed.greenlight("deploy", "v1.1.0", config=spec)
        assert good.code == 0, good.output
        results = [load.stop() for load in loads]
    for result in results:
        assert_served(result)
        assert result.versions["v1.0.2"] == 0
    assert bed.live(spec) == dict.fromkeys(hosts, "v1.1.0")


def test_a_proxy_that_disagrees_with_the_recorded_live_colour_is_refused(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0
    # Someone points the file back at blue by hand and forgets the reload.
    upstream = Host.named("h1").home / "nginx" / "upstream.conf"
    upstream.write_text(upstream.read_text().replace("color=green", "color=blue"))
    run = bed.greenlight("deploy", "v1.1.0", config=spec)
    assert run.code == 2, run.output
    assert run.has(r"h1: the proxy serves v1.0.1 \(green\), but the host records blue \(v1.0.0\)")
    assert bed.status(spec)["hosts"][0]["lock"] is None


def test_ports_swapped_in_the_spec_are_refused_and_blame_no_release(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    swapped = bed.spec(name="swapped", ports={"blue": 8002, "green": 8001}, **FAST)
    run = bed.greenlight("deploy", "v1.0.1", config=swapped)
    assert run.code == 2, run.output
    assert run.has(r"h1: green's port 8001 is the port blue serves v1.0.0 on; fix `ports`")
    host = bed.status(spec)["hosts"][0]
    assert host["bad_versions"] == [] and host["live"]["version"] == "v1.0.0"


# -- years of history --------------------------------------------------------------


def test_hosts_with_years_of_history_deploy_and_roll_back_like_fresh_ones(bed: Bed) -> None:
    hosts = ("h1", "h2")
    testbed.hosts.seed_history(hosts, verdicts=500, history=2000)
    spec = bed.spec(hosts=hosts, **FAST)
    status = bed.status(spec)["hosts"]
    assert all(h["epoch"] == 0 and h["live"] is None and not h["problems"] for h in status)
    assert all(len(h["bad_versions"]) == 167 for h in status)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    with ExitStack() as stack:
        loads = bed.loads(stack, hosts)
        deployed = bed.greenlight("deploy", "v1.0.1", config=spec)
        rolled = bed.greenlight("rollback", config=spec)
        results = [load.stop() for load in loads]
    assert deployed.code == 0, deployed.output
    assert rolled.code == 0, rolled.output
    for result in results:
        assert_served(result)
    assert bed.live(spec) == dict.fromkeys(hosts, "v1.0.0")
    assert [h["epoch"] for h in bed.status(spec)["hosts"]] == [3, 3]


# -- the release's own tests --------------------------------------------------------

TESTS_PASS = [
    "sh",
    "-c",
    'python3 -c "import os, urllib.request as u; '
    "r = u.urlopen(os.environ['GREENLIGHT_URL'] + '/api/health/'); "
    "print('critical tests: 12 passed against', r.headers['X-App-Version'])\"",
]
TESTS_FAIL = ["sh", "-c", "echo 'test_checkout FAILED'; echo '2 failed, 10 passed'; exit 1"]


def test_the_test_hook_runs_against_the_new_colour_before_smoke(bed: Bed) -> None:
    spec = bed.spec(hooks={**bed.base["hooks"], "test": {"command": TESTS_PASS}}, **FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    run = bed.greenlight("deploy", "v1.0.1", config=spec)
    assert run.code == 0, run.output
    assert run.has(r"critical tests: 12 passed against v1.0.1")
    lines = run.output.splitlines()
    tested = next(i for i, line in enumerate(lines) if "tests passed against green" in line)
    smoked = next(i for i, line in enumerate(lines) if "smoke requests passed" in line)
    assert tested < smoked


def test_failing_tests_stop_the_release_and_skipping_them_is_recorded(bed: Bed) -> None:
    spec = bed.spec(
        hooks={**bed.base["hooks"], "test": {"command": TESTS_FAIL, "timeout": 60}}, **FAST
    )
    assert bed.greenlight("deploy", "v1.0.0", "--skip-tests", config=spec).code == 0
    with bed.load("h1") as load:
        run = bed.greenlight("deploy", "v1.0.1", config=spec)
    assert_served(load.stop())
    assert run.code == 1, run.output
    assert run.has(r"test failed on h1: test hook failed \(exit 1\)")
    assert run.has(r"^\s+2 failed, 10 passed$") or run.has(r"│ 2 failed, 10 passed")
    host = bed.status(spec)["hosts"][0]
    assert host["live"]["version"] == "v1.0.0" and host["bad_versions"] == ["v1.0.1"]
    skipped = bed.greenlight("deploy", "v1.1.0", "--skip-tests", config=spec)
    assert skipped.code == 0, skipped.output
    assert skipped.has(r"tests SKIPPED at e2e's request") and skipped.has(
        r"is live \(tests skipped\)"
    )
    history = bed.status(spec)["history"]
    assert [(h["version"], h["skipped_tests"]) for h in history[:3]] == [
        ("v1.1.0", True),
        ("v1.0.1", False),
        ("v1.0.0", True),
    ]
