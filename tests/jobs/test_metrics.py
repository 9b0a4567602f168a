"""The jobs layer's metrics as a scrape sees them, each moved by the real code path that
measures it: the jobs API against a private Redis (leases, requests that end), the
engine's recovery over scripted hosts with the workers' sink (phases, rollbacks and
their cause, detection latency), and a real `greenlight worker` process, whose work
horses write prometheus-client's multiprocess files and whose /metrics serves them."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from deploy import probes
from deploy.context import Context
from deploy.deployment import Deployment, FailureReport
from deploy.errors import CANCELLED, Cancelled, LockHeld
from deploy.events import ListSink
from deploy.ops.locks import lock_all
from deploy.pipeline import recover, run_deploy_phases
from deploy.spec import StabilitySpec, load_specs
from jobs import api
from jobs.records import RecordStore
from jobs.streams import RedisSink
from jobs.work import refused_in
from tests.jobs.test_api import make_spec
from tests.metrics_text import scrape, value
from tests.redis_server import free_port
from tests.unit.local import local_spec
from tests.unit.test_recover import Fleet, fleet, servers  # noqa: F401 (fixtures)

SPECS = {"shop": make_spec()}
ROOT = Path(__file__).resolve().parents[2]


class Delta:
    """A sample's change between two scrapes of this process."""

    def __init__(self) -> None:
        self.before = scrape()

    def __call__(self, name: str, **labels: str) -> float:
        return value(scrape(), name, **labels) - value(self.before, name, **labels)


# -- leases and requests (the bot's and the CLI's process) ----------------------------


def test_a_refused_lease_is_counted_by_why(r: redis.Redis) -> None:
    delta = Delta()
    first = api.request_deployment(r, SPECS, app=None, env="staging", version="v1.0.1", who="al")
    busy = api.request_deployment(r, SPECS, app=None, env="staging", version="v1.0.2", who="bo")
    assert first.accepted and not busy.accepted
    api.lock(r, SPECS, app=None, env="production", who="carol", reason="database migration")
    locked = api.request_deployment(r, SPECS, app=None, env=None, version="v1.0.1", who="al")
    assert not locked.accepted

    refusals = "greenlight_lock_refusals_total"
    assert delta(refusals, app="shop", env="staging", lock="lease", reason="busy") == 1
    assert delta(refusals, app="shop", env="production", lock="lease", reason="locked") == 1
    assert delta(refusals, lock="host") == 0


def test_a_request_that_ends_is_counted_once_by_its_outcome(r: redis.Redis) -> None:
    delta = Delta()
    asked = api.request_deployment(r, SPECS, app=None, env=None, version="v1.0.1", who="alice")
    assert asked.deployment is not None
    assert api.reject(r, asked.deployment, "bob", "not today").accepted
    assert not api.reject(r, asked.deployment, "bob").accepted  # ended already

    ended = "greenlight_deployments_total"
    assert delta(ended, app="shop", env="production", kind="deploy", outcome="rejected") == 1
    assert delta(ended) == 1


# -- the engine's recovery, measured by the workers' sink -----------------------------


class FailingApp(ThreadingHTTPServer):
    """A released version that answers every request with a 500."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ServerError)
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ServerError(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def failing_app() -> Iterator[FailingApp]:
    app = FailingApp()
    yield app
    app.shutdown()
    app.server_close()


def measured(f: Fleet, r: redis.Redis) -> Context:
    """The fleet's deployment, with the sink a phase job gives the engine."""
    sink = RedisSink(r, app="shop", env="production")
    return Context(f.ctx.spec, f.ctx.env, f.record, sink, executors=dict(f.hosts))


async def test_a_broken_release_in_the_stability_window_is_counted_with_its_detection(
    fleet: Callable[..., Fleet],  # noqa: F811
    failing_app: FailingApp,
    r: redis.Redis,
) -> None:
    window = StabilitySpec(duration=30, interval=0.2, timeout=1, max_errors=2, max_error_rate=1)

    async def monitor(ctx: Context) -> None:
        async def interval(index: int, figures: probes.Figures) -> None:
            return None

        await probes.stability_window([failing_app.url], window, "X-App-Version", interval)

    delta = Delta()
    started = time.monotonic()
    record = await run_deploy_phases(measured(fleet(switched=True), r), [("monitor", monitor)])
    took = time.monotonic() - started

    assert record.outcome == "rolled_back"
    where = {"app": "shop", "env": "production"}
    assert delta("greenlight_rollbacks_total", **where, cause="stability") == 1
    assert delta("greenlight_rollbacks_total") == 1
    # Three errors trip it: the first at once, the third two intervals (0.4 s) later.
    assert delta("greenlight_detection_latency_seconds_count", **where) == 1
    detected = delta("greenlight_detection_latency_seconds_sum", **where)
    assert 0.3 <= detected <= took
    phases = "greenlight_phase_duration_seconds"
    assert delta(f"{phases}_count", **where, phase="monitor", result="failed") == 1
    assert delta(f"{phases}_count", **where, phase="rollback", result="ok") == 1
    assert 0.3 <= delta(f"{phases}_sum", phase="monitor") <= took


async def test_a_rollback_after_a_cancel_or_a_dead_worker_names_its_cause(
    fleet: Callable[..., Fleet],  # noqa: F811
    r: redis.Redis,
) -> None:
    async def cancelled(ctx: Context) -> None:
        raise Cancelled(CANCELLED)

    delta = Delta()
    record = await run_deploy_phases(measured(fleet(switched=True), r), [("monitor", cancelled)])
    assert record.outcome == "rolled_back"
    # A recovery job puts back what a dead worker switched: no phase of it failed.
    taken_over = measured(fleet(switched=True), r)
    await recover(taken_over, FailureReport(phase="monitor", message="its driver stopped"))
    assert taken_over.deployment.outcome == "rolled_back"
    # A failure before the switch moves no traffic: no rollback is counted for it.
    before_switch = measured(fleet(switched=False), r)
    await recover(before_switch, FailureReport(phase="smoke", message="/: server error 502"))
    assert before_switch.deployment.outcome == "not_switched"

    rollbacks = "greenlight_rollbacks_total"
    assert delta(rollbacks, app="shop", env="production", cause="cancelled") == 1
    assert delta(rollbacks, app="shop", env="production", cause="recovery") == 1
    assert delta(rollbacks) == 2
    assert delta("greenlight_detection_latency_seconds_count") == 0


async def test_a_host_lock_held_by_another_deployment_is_counted(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("server 127.0.0.1:9 down;\n")
    spec = local_spec(app_dir=str(tmp_path / "app"), proxy={"upstream_file": str(upstream)})

    def deployment(version: str, who: str) -> Context:
        record = Deployment(
            id=f"production-{version}-x", env="production", version=version, who=who
        )
        return Context(spec, spec.environment("production"), record, ListSink())

    await lock_all(deployment("v1.0.0", "alice"))  # the real lock, on this machine
    bob = deployment("v1.0.1", "bob")
    delta = Delta()
    with pytest.raises(LockHeld, match="deploy lock held by alice") as held:
        await lock_all(bob)
    refused_in(bob, "preflight", held.value)  # what the phase job does with a refusal

    refusals = "greenlight_lock_refusals_total"
    assert delta(refusals, app="shop", env="production", lock="host", reason="held") == 1
    assert delta(refusals, lock="lease") == 0


# -- a real worker: work horses, multiprocess files, its own /metrics -----------------

SPEC = """\
app: shop
image: REGISTRY/acme/shop
registry: {username: ci}
# No machine has this much disk: preflight refuses before anything would start.
thresholds: {min_disk_mb: 1000000000}
environments:
  production:
    public_url: http://127.0.0.1:9
    ssh: {key: k, known_hosts: kh}
    allow_local: true
    approval: none
    app_dir: APP_DIR
    hosts:
      - {name: h1, address: local}
"""
PLANTED = "planted-registry-password-0451"
DIGEST = "sha256:" + "ab" * 32


class Registry(ThreadingHTTPServer):
    """The registry's HTTP API for one tag, behind the planted password."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Manifests)
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Manifests(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        expected = "Basic " + base64.b64encode(f"ci:{PLANTED}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
        elif self.path != "/v2/acme/shop/manifests/v1.0.1":
            self.send_response(404)
        else:
            self.send_response(200)
            self.send_header("Docker-Content-Digest", DIGEST)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def worker(
    tmp_path: Path, redis_server: str, r: redis.Redis
) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """`greenlight worker` on the private Redis, serving /metrics on a free port, its
    one host this machine (`address: local`, an empty app directory), its registry on
    loopback. No docker engine is reachable from it."""
    registry = Registry()
    config = tmp_path / "greenlight.yml"
    config.write_text(
        SPEC.replace("APP_DIR", str(tmp_path / "app")).replace("REGISTRY", registry.host)
    )
    port = free_port()
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_server,
        "GREENLIGHT_CONFIG": str(config),
        "GREENLIGHT_METRICS_PORT": str(port),
        "GREENLIGHT_LOG_FORMAT": "json",
        "GREENLIGHT_REGISTRY_PASSWORD": PLANTED,
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "greenlight", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"the worker did not serve {url}: {log.read_text()}"
                    ) from None
                time.sleep(0.1)
        yield url, log, {"specs": load_specs(str(config))}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        registry.shutdown()
        registry.server_close()


def ended(r: redis.Redis, deployment: str | None) -> str:
    """The request's final state, once its jobs have run on the worker."""
    assert deployment is not None
    store = RecordStore(r)
    deadline = time.monotonic() + 30
    while (record := store.load(deployment)) is None or not record.final:
        assert time.monotonic() < deadline, f"{deployment} did not end"
        time.sleep(0.1)
    return record.state


def test_a_worker_serves_what_its_work_horses_measured(
    worker: tuple[str, Path, dict[str, Any]], r: redis.Redis
) -> None:
    url, log, setup = worker
    empty = urllib.request.urlopen(url, timeout=2).read().decode()  # noqa: S310
    # A rollback where nothing was ever live: its one phase job reads the host (this
    # machine) and refuses it.
    rollback = api.rollback(r, setup["specs"], app=None, env=None, who="alice")
    assert ended(r, rollback.deployment) == "refused"
    # A deployment: prepare finds the tag in the registry (with the password); preflight,
    # the next job in another work horse, refuses this machine's disk.
    deploy = api.request_deployment(
        r, setup["specs"], app=None, env=None, version="v1.0.1", who="al"
    )
    assert ended(r, deploy.deployment) == "refused"

    # Three work horses, each gone when its job ended; their samples, summed.
    text = urllib.request.urlopen(url, timeout=2).read().decode()  # noqa: S310
    where = {"app": "shop", "env": "production"}
    ends = "greenlight_deployments_total"
    assert value(text, ends, **where, kind="rollback", outcome="refused") == 1
    assert value(text, ends, **where, kind="deploy", outcome="refused") == 1
    assert value(empty, ends) == 0
    phases = "greenlight_phase_duration_seconds_count"
    assert value(text, phases, **where, phase="plan", result="refused") == 1
    assert value(text, phases, **where, phase="prepare", result="ok") == 1
    assert value(text, phases, **where, phase="preflight", result="refused") == 1
    assert value(text, "greenlight_queue_wait_seconds_count", **where) == 3

    # Its log: JSON lines, the deployments' events each naming theirs, no secret.
    worker_log = log.read_text()
    lines = [json.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    events = [line for line in lines if line["logger"] == "greenlight.events"]
    assert {line["deployment"] for line in events} == {rollback.deployment, deploy.deployment}
    assert {"time", "level", "logger", "message"} <= events[0].keys()
    assert any(f"is {DIGEST}" in line["message"] for line in events)
    assert any("MB free disk" in line["message"] for line in events)
    # The request's own moves the worker made (running, refused), the last one of each:
    last_move = {
        line["deployment"]: line["message"] for line in events if line["event"] == "request"
    }
    assert set(last_move) == {rollback.deployment, deploy.deployment}
    assert all(" refused" in message for message in last_move.values()), last_move
    assert PLANTED not in worker_log


def test_a_worker_whose_metrics_port_is_taken_says_so_and_exits(redis_server: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server}
        env["GREENLIGHT_METRICS_PORT"] = str(port)
        done = subprocess.run(
            [sys.executable, "-m", "greenlight", "worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        f"cannot listen on 127.0.0.1:{port} (GREENLIGHT_METRICS_HOST, GREENLIGHT_METRICS_PORT): "
        "Address already in use"
    )
