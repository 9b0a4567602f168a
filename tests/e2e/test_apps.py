"""Several apps on the same hosts, from one directory of specs: each its own app dir,
ports, upstream and lock; deployed at once, neither disturbs the other. Likewise two
environments of one app (production and staging) on the same hosts."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import testbed
from testbed import specs
from testbed.load import Load
from tests.e2e.conftest import FAST, Bed, assert_served

HOSTS = ("h1", "h2")


def apps_dir(bed: Bed, **overrides: Any) -> Path:
    folder = bed.tmp / "apps"
    folder.mkdir()
    for app in ("sample", "ledger"):
        specs.variant(HOSTS, folder / f"{app}.yml", app=app, **FAST, **overrides)
    return folder


def load(bed: Bed, stack: ExitStack, app: str, host: str) -> Load:
    env = specs.base(app)["environments"]["production"]
    url = next(h["proxy_url"] for h in env["hosts"] if h["name"] == host).rstrip("/") + "/"
    out = bed.tmp / f"load-{app}-{host}-{time.monotonic_ns()}.csv"
    return stack.enter_context(Load(url, out, clients=4, duration=240))


def live(bed: Bed, config: Path, app: str, env: str = "production") -> dict[str, str | None]:
    run = bed.greenlight("status", "--json", "--app", app, "--env", env, config=config)
    return {h["name"]: (h["live"] or {}).get("version") for h in json.loads(run.output)["hosts"]}


def test_two_apps_deploy_at_once_on_the_same_hosts_and_neither_disturbs_the_other(
    bed: Bed,
) -> None:
    config = apps_dir(bed)
    none = bed.greenlight("deploy", "v1.0.0", config=config)
    assert none.code == 2 and none.has(r"choose an app with --app \(ledger, sample\)"), none.output
    first = bed.start("deploy", "v1.0.0", "--app", "sample", config=config)
    second = bed.start("deploy", "v1.0.1", "--app", "ledger", config=config)
    assert first.finish().code == 0 and second.finish().code == 0
    assert live(bed, config, "sample") == dict.fromkeys(HOSTS, "v1.0.0")
    assert live(bed, config, "ledger") == dict.fromkeys(HOSTS, "v1.0.1")
    with ExitStack() as stack:
        loads = [load(bed, stack, app, "h1") for app in ("sample", "ledger")]
        upgrade = bed.greenlight("deploy", "v1.1.0", "--app", "sample", config=config)
        results = [running.stop() for running in loads]
    assert upgrade.code == 0, upgrade.output
    for result in results:
        assert_served(result)
    # ledger never saw anything but its own release while sample moved on
    assert set(results[1].versions) == {"v1.0.1"}
    assert live(bed, config, "ledger") == dict.fromkeys(HOSTS, "v1.0.1")
    assert live(bed, config, "sample") == dict.fromkeys(HOSTS, "v1.1.0")


def public_load(bed: Bed, stack: ExitStack, env: str) -> Load:
    """Traffic through the load balancer's port for the sample app's environment."""
    url = specs.base()["environments"][env]["public_url"].rstrip("/") + "/"
    out = bed.tmp / f"load-{env}-{time.monotonic_ns()}.csv"
    return stack.enter_context(Load(url, out, clients=4, duration=240))


def test_staging_and_production_of_one_app_share_the_hosts_and_neither_disturbs_the_other(
    bed: Bed,
) -> None:
    every = tuple(h["name"] for h in bed.hosts)
    config = specs.variant(every, bed.tmp / "sample.yml", **FAST)
    production = bed.start("deploy", "v1.0.0", config=config)
    staging = bed.start("deploy", "v1.0.1", "--env", "staging", config=config)
    assert production.finish().code == 0, production.seen
    assert staging.finish().code == 0, staging.seen
    assert live(bed, config, "sample") == dict.fromkeys(every, "v1.0.0")
    assert live(bed, config, "sample", "staging") == dict.fromkeys(every, "v1.0.1")

    # staging moves on while production's public URL answers only production's release
    with ExitStack() as stack:
        watched = public_load(bed, stack, "production")
        upgrade = bed.greenlight("deploy", "v1.1.0", "--env", "staging", config=config)
        seen = watched.stop()
    assert upgrade.code == 0, upgrade.output
    assert_served(seen)
    assert set(seen.versions) == {"v1.0.0"}

    # and the other way round
    with ExitStack() as stack:
        watched = public_load(bed, stack, "staging")
        upgrade = bed.greenlight("deploy", "v1.0.1", config=config)
        seen = watched.stop()
    assert upgrade.code == 0, upgrade.output
    assert_served(seen)
    assert set(seen.versions) == {"v1.1.0"}

    assert live(bed, config, "sample") == dict.fromkeys(every, "v1.0.1")
    assert live(bed, config, "sample", "staging") == dict.fromkeys(every, "v1.1.0")
    # each environment runs as its own compose projects on each host
    running = testbed.hosts.status(testbed.paths.Host.named("h1"))["containers"]
    assert any(c.startswith("sample-staging-") and "running" in c for c in running), running
    assert any(c.startswith(("sample-blue-", "sample-green-")) for c in running), running
