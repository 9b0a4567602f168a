"""Two and three hosts: they switch together, or not at all, and roll back together."""

from __future__ import annotations

import re
from contextlib import ExitStack

from tests.e2e.conftest import FAST, Bed, assert_served


def host_fault(bed: Bed, host: str, fault: str) -> None:
    """Make every colour started on `host` from now on misbehave (a host-local fault)."""
    (bed.app_dir(host) / ".env").write_text(f"HOST_FAULT={fault}\n")


def test_two_hosts_switch_together(bed: Bed) -> None:
    spec = bed.spec(hosts=("h1", "h2"), **FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    with ExitStack() as stack:
        loads = bed.loads(stack, ("h1", "h2"))
        run = bed.greenlight("deploy", "v1.0.1", config=spec)
        results = [load.stop() for load in loads]
    assert run.code == 0, run.output
    for result in results:
        assert_served(result)
    assert bed.live(spec) == {"h1": "v1.0.1", "h2": "v1.0.1"}
    # No host switched before both were verified: every switch line comes after
    # the last verify line.
    lines = run.output.splitlines()
    last_verify = max(i for i, line in enumerate(lines) if re.search(r" verify +h\d ", line))
    switches = [
        i for i, line in enumerate(lines) if re.search(r" switch +h\d .* answers v1.0.1", line)
    ]
    assert len(switches) == 2 and min(switches) > last_verify


def test_three_hosts_one_failing_verify_means_none_switches(bed: Bed) -> None:
    spec = bed.spec(hosts=("h1", "h2", "h3"), **FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    host_fault(bed, "h2", "health500")
    with ExitStack() as stack:
        loads = bed.loads(stack, ("h1", "h2", "h3"))
        run = bed.greenlight("deploy", "v1.0.1", config=spec)
        results = [load.stop() for load in loads]
    assert run.code == 1, run.output
    assert run.has(r"(stage|verify) failed on h2")
    assert not run.has(r"▶ switch")
    for result in results:
        assert_served(result)
        assert result.versions["v1.0.1"] == 0
    assert bed.live(spec) == {"h1": "v1.0.0", "h2": "v1.0.0", "h3": "v1.0.0"}
    # The idle colour was torn down everywhere, not only on the failing host.
    for host in bed.status(spec)["hosts"]:
        assert host["colors"]["green"]["status"] == "removed"


def test_three_hosts_one_failing_after_the_switch_rolls_all_back(bed: Bed) -> None:
    spec = bed.spec(hosts=("h1", "h2", "h3"), **FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    host_fault(bed, "h3", "delayed500")
    window = bed.spec(
        hosts=("h1", "h2", "h3"),
        name="window",
        stability={"duration": 10, "interval": 1},
        drain=0.5,
    )
    with ExitStack() as stack:
        loads = bed.loads(stack, ("h1", "h2", "h3"))
        run = bed.greenlight("deploy", "v1.0.1", config=window)
        h1, h2, h3 = (load.stop() for load in loads)
    assert run.code == 1, run.output
    assert run.has(r"monitor failed: unstable")
    assert run.has(r"rolling back h1, h2, h3 to v1.0.0")
    assert bed.live(spec) == {"h1": "v1.0.0", "h2": "v1.0.0", "h3": "v1.0.0"}
    # h1 and h2 served v1.0.1 without a single failure and were rolled back with h3;
    # only h3's broken release answered with errors.
    for healthy in (h1, h2):
        assert_served(healthy)
        assert healthy.versions["v1.0.1"] > 0
    assert_served(h3, broken="v1.0.1")
    assert h3.failures
    for result in (h1, h2, h3):
        last = result.samples[-1]
        assert last.version == "v1.0.0", result.describe()
