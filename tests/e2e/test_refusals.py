"""Bad input and hostile conditions: a precise message, the right exit code, no change."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

import testbed
from tests.e2e.conftest import FAST, Bed, assert_served


@pytest.mark.parametrize("version", ["v1.0.1;rm -rf /", "$(reboot)", "v1.0.1 ", "v\uff11.0.1"])
def test_hostile_version_is_refused_before_any_host_is_contacted(bed: Bed, version: str) -> None:
    spec = bed.spec(**FAST)
    testbed.hosts.host_down("h1")  # contacting the host would fail differently
    run = bed.greenlight("deploy", version, config=spec)
    assert run.code == 2, run.output
    assert run.has(r"refused: version .* (is not semver|outside printable ASCII|too long)")


def test_unknown_tag_and_unknown_environment_are_refused(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    missing = bed.greenlight("deploy", "v9.9.9", config=spec)
    assert missing.code == 2 and missing.has(r"sample:v9.9.9 does not exist in the registry")
    unknown = bed.greenlight("deploy", "v1.0.0", "--env", "moon", config=spec)
    assert unknown.code == 2 and unknown.has(
        r"unknown environment 'moon' \(known: production, staging\)"
    )


def test_invalid_spec_names_the_key(bed: Bed) -> None:
    spec = bed.spec(ports={"blue": 8001, "green": 8001})
    run = bed.greenlight("deploy", "v1.0.0", config=spec)
    assert run.code == 2 and run.has(r"invalid spec: ports: .*different ports")


def test_a_second_deploy_while_one_runs_is_refused(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    first = bed.start("deploy", "v1.0.0", config=spec)
    first.wait_for(r"▶ stage")
    second = bed.greenlight("deploy", "v1.0.1", config=spec)
    assert second.code == 2, second.output
    assert second.has(r"h1: deploy lock held by e2e for production-v1.0.0-\d{8}_\d{6}")
    assert first.finish().code == 0
    assert bed.live(spec) == {"h1": "v1.0.0"}


def test_an_unknown_host_key_is_refused(bed: Bed, tmp_path: Path) -> None:
    impostor = tmp_path / "known_hosts"
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    impostor.write_text(f"[127.0.0.2]:2222 {key.with_suffix('.pub').read_text()}")
    spec = bed.spec(**FAST)
    text = spec.read_text().replace(bed.info["ssh"]["known_hosts"], str(impostor))
    spec.write_text(text)
    run = bed.greenlight("deploy", "v1.0.0", config=spec)
    assert run.code == 2, run.output
    assert run.has(r"host key of gl-h1@127.0.0.2:2222 is not trusted by .*known_hosts")
    assert "PRIVATE KEY" not in run.output


def test_an_unreachable_host_is_refused_at_preflight(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    testbed.hosts.host_down("h1")
    run = bed.greenlight("deploy", "v1.0.0", config=spec)
    assert run.code == 2, run.output
    assert run.has(r"cannot connect to gl-h1@127.0.0.2:2222")


def test_a_host_lost_mid_deploy_leaves_production_serving(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    with bed.load("h1") as load:
        deploy = bed.start("deploy", "v1.0.1", config=spec)
        deploy.wait_for(r"stage .*starting green")
        testbed.hosts.host_down("h1")
        run = deploy.finish()
        result = load.stop()
    assert run.code == 1, run.output
    assert run.has(r"stage failed on h1: (connection lost|cannot start|cannot connect)"), run.output
    assert run.has(r"production untouched")
    assert run.has(r"lock not released .*greenlight break-lock")
    assert_served(result)
    assert result.versions["v1.0.1"] == 0
    testbed.hosts.host_up("h1")
    host = bed.status(spec)["hosts"][0]
    assert host["live"]["version"] == "v1.0.0"
    assert host["lock"] and "production-v1.0.1" in host["lock"]
    assert bed.greenlight("break-lock", "--yes", config=spec).code == 0
    assert bed.greenlight("deploy", "v1.0.1", config=spec).code == 0


def test_ctrl_c_before_the_switch_leaves_production_untouched(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    with bed.load("h1") as load:
        deploy = bed.start("deploy", "v1.0.1", config=spec)
        deploy.wait_for(r"stage .*starting green")
        deploy.process.send_signal(signal.SIGINT)
        run = deploy.finish()
        result = load.stop()
    assert run.code == 1, run.output
    assert run.has(r"cancelled by an operator") and run.has(r"production untouched")
    assert_served(result)
    assert result.versions["v1.0.1"] == 0
    host = bed.status(spec)["hosts"][0]
    assert host["live"]["version"] == "v1.0.0" and host["lock"] is None
    assert host["colors"]["green"]["status"] == "removed"
    assert host["bad_versions"] == []  # an operator's cancel says nothing about the release


def test_sigterm_during_the_stability_window_rolls_back(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    window = bed.spec(name="window", stability={"duration": 20, "interval": 1})
    with bed.load("h1") as load:
        deploy = bed.start("deploy", "v1.0.1", config=window)
        deploy.wait_for(r"≈ interval 2")
        deploy.process.send_signal(signal.SIGTERM)
        run = deploy.finish()
        result = load.stop()
    assert run.code == 1, run.output
    assert run.has(r"monitor failed: cancelled by an operator")
    assert run.has(r"traffic is back on v1.0.0")
    assert_served(result)
    assert bed.live(spec) == {"h1": "v1.0.0"}
    assert bed.status(spec)["hosts"][0]["lock"] is None


def test_a_host_lost_after_a_stable_switch_keeps_the_release_and_its_lock(bed: Bed) -> None:
    spec = bed.spec(**FAST)
    assert bed.greenlight("deploy", "v1.0.0", config=spec).code == 0
    window = bed.spec(name="window", stability={"duration": 4, "interval": 1})
    with bed.load("h1") as load:
        deploy = bed.start("deploy", "v1.0.1", config=window)
        deploy.wait_for(r"≈ interval 2")
        testbed.hosts.host_down("h1")
        run = deploy.finish()
        result = load.stop()
    assert run.code == 0, run.output
    assert run.has(r"v1.0.1 is live") and run.has(r"h1: not tidied .*lock is kept")
    assert_served(result)
    testbed.hosts.host_up("h1")
    host = bed.status(spec)["hosts"][0]
    assert host["live"]["version"] == "v1.0.1"
    assert host["lock"] and "production-v1.0.1" in host["lock"]


def test_too_little_disk_or_memory_is_refused_before_anything_changes(bed: Bed) -> None:
    spec = bed.spec(thresholds={"min_disk_mb": 10_000_000, "min_memory_mb": 10_000_000}, **FAST)
    run = bed.greenlight("deploy", "v1.0.0", config=spec)
    assert run.code == 2, run.output
    assert run.has(r"h1: only \d+ MB free disk, 10000000 MB required; only \d+ MB available")
    host = bed.status(spec)["hosts"][0]
    assert host["live"] is None and host["lock"] is None and host["epoch"] == 0
