"""What recovery does after a failure, host by host: point the proxy back, tear down the
new colour, put the good release back, record the verdict and history, release or keep
the locks. Commands are answered by a scripted executor; the previous colour and each
host's proxy are real HTTP servers on loopback, because recovery proves what they serve."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deploy.commands import Command, Result, compose, proxy
from deploy.context import Context
from deploy.deployment import Deployment, FailureReport, HostProgress
from deploy.errors import Cancelled, HostUnreachable, ProbeFailed, command_failed
from deploy.events import Kind, ListSink
from deploy.executor import LineCallback
from deploy.pipeline import Phase, recover, run_deploy_phases
from deploy.spec import Color, parse_spec
from deploy.state import ColorRecord, ColorStatus, HistoryEntry, VerdictRecord, parse_live

OLDER, PREVIOUS, NEW = "v1.2.0", "v1.3.0", "v1.4.0"
IMAGE = "registry.example.com/acme/shop"
EPOCH = 7
BLUE_PORT, GREEN_PORT = 8001, 8002

Script = Callable[[Command], Result]


# -- a host as the engine reaches it --------------------------------------------------


class AppServer(ThreadingHTTPServer):
    """A loopback HTTP server that answers every GET as a healthy app of `version`."""

    daemon_threads = True

    def __init__(self, version: str) -> None:
        super().__init__(("127.0.0.1", 0), _Healthy)
        self.version = version
        # A short poll keeps shutdown (each test's cleanup) quick.
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Healthy(BaseHTTPRequestHandler):
    server: AppServer

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-App-Version", self.server.version)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class ScriptedExecutor:
    """The Executor protocol over a script: every command is recorded, then answered by
    the script (a Result, or an error it raises); a non-zero exit fails as over SSH."""

    def __init__(self, name: str, script: Script, apps: Mapping[int, AppServer]) -> None:
        self.name = name
        self.script = script
        self.apps = apps  # what listens on the host's colour ports
        self.ran: list[Command] = []
        self.closed = False

    async def run(
        self,
        cmd: Command,
        *,
        on_line: LineCallback | None = None,
        check: bool = True,
        on_retry: LineCallback | None = None,
    ) -> Result:
        self.ran.append(cmd)
        result = self.script(cmd)
        if check and result.exit_status != 0:
            raise command_failed(self.name, cmd, result)
        return result

    @contextlib.asynccontextmanager
    async def tunnel(self, address: str, port: int) -> AsyncIterator[int]:
        assert address == "127.0.0.1"
        yield self.apps[port].port

    async def close(self) -> None:
        self.closed = True

    @property
    def steps(self) -> list[str]:
        return [cmd.step for cmd in self.ran]

    def stdin_of(self, step: str) -> list[str]:
        return [cmd.stdin or "" for cmd in self.ran if cmd.step == step]


def host_script(served_by: AppServer, fail: Mapping[str, Script] | None = None) -> Script:
    """A host where every command succeeds and the proxy serves whatever the upstream
    file last written names, except the steps in `fail` (by prefix), answered as given."""

    def answer(cmd: Command) -> Result:
        for prefix, failing in (fail or {}).items():
            if cmd.step.startswith(prefix):
                return failing(cmd)
        if cmd.step == "switch proxy":
            live = parse_live(cmd.stdin or "")
            assert live is not None, "every upstream written carries its marker"
            served_by.version = live.version
        return Result(0)

    return answer


def lost(host: str) -> Script:
    def answer(cmd: Command) -> Result:
        raise HostUnreachable(host, f"connection lost during {cmd.step}: Connection reset")

    return answer


def exits(status: int, *output: str) -> Script:
    return lambda cmd: Result(status, list(output))


# -- a deployment of NEW over PREVIOUS (blue), staged in green --------------------------


def digest(version: str) -> str:
    return "sha256:" + version.encode().hex().ljust(64, "0")


def color(color: Color, version: str, status: ColorStatus) -> ColorRecord:
    return ColorRecord(
        color=color,
        version=version,
        digest=digest(version),
        image=f"{IMAGE}@{digest(version)}",
        port=BLUE_PORT if color == "blue" else GREEN_PORT,
        deployment=f"production-{version}-20260101_000000",
        status=status,
    )


@dataclass
class Fleet:
    ctx: Context
    sink: ListSink
    hosts: dict[str, ScriptedExecutor]
    proxies: dict[str, AppServer]

    @property
    def record(self) -> Deployment:
        return self.ctx.deployment

    def messages(self, kind: Kind) -> list[str]:
        return [e.message for e in self.sink.events if e.kind == kind]


@pytest.fixture
def servers() -> Iterator[Callable[[str], AppServer]]:
    started: list[AppServer] = []

    def start(version: str) -> AppServer:
        started.append(AppServer(version))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def fleet(servers: Callable[[str], AppServer]) -> Callable[..., Fleet]:
    def build(
        names: tuple[str, ...] = ("web1", "web2"),
        *,
        switched: bool,
        staged: bool = True,
        fail: Mapping[str, Mapping[str, Script]] | None = None,
        scripts: Mapping[str, Script] | None = None,
    ) -> Fleet:
        """Hosts that each serve PREVIOUS from blue (warm) and hold OLDER stopped in green,
        locked by a deployment of NEW into green; `switched`: their proxy serves NEW."""
        proxies = {name: servers(NEW if switched else PREVIOUS) for name in names}
        spec = parse_spec(
            {
                "app": "shop",
                "image": IMAGE,
                "health": {"path": "/health", "expect_json": {"status": "ok"}, "timeout": 1},
                "proxy": {"confirm_settle": 0.05, "confirm_timeout": 1, "confirm_successes": 2},
                "environments": {
                    "production": {
                        "public_url": "https://shop.example.com",
                        "ssh": {"key": "keys/id", "known_hosts": "keys/known_hosts"},
                        "hosts": [
                            {
                                "name": name,
                                "address": f"10.0.0.{i + 5}",
                                "port": 22,
                                "user": "deploy",
                                "proxy_url": f"http://127.0.0.1:{proxies[name].port}",
                            }
                            for i, name in enumerate(names)
                        ],
                    }
                },
            }
        )
        env = spec.environment("production")
        record = Deployment(
            id=f"production-{NEW}-20260102_120000",
            env="production",
            version=NEW,
            who="alice",
            digest=digest(NEW),
            image=f"{IMAGE}@{digest(NEW)}",
        )
        for name in names:
            record.hosts[name] = HostProgress(
                name=name,
                epoch=EPOCH,
                locked=True,
                planned=True,
                live_before=color("blue", PREVIOUS, "running"),
                idle_before=color("green", OLDER, "stopped"),
                upstream_before=proxy.upstream_text(
                    env.proxy.upstream_template,
                    color="blue",
                    address="127.0.0.1",
                    port=BLUE_PORT,
                    version=PREVIOUS,
                    deployment=f"production-{PREVIOUS}-20260101_000000",
                    epoch=EPOCH - 1,
                ),
                target="green",
                staged=staged,
                verified=staged,
                switched=switched,
            )
        hosts = {
            name: ScriptedExecutor(
                name,
                (scripts or {}).get(name) or host_script(proxies[name], (fail or {}).get(name)),
                {BLUE_PORT: servers(PREVIOUS)},
            )
            for name in names
        }
        sink = ListSink()
        ctx = Context(spec, env, record, sink, executors=dict(hosts))
        return Fleet(ctx, sink, hosts, proxies)

    return build


def history(host: ScriptedExecutor) -> list[HistoryEntry]:
    return [HistoryEntry.model_validate_json(s) for s in host.stdin_of("append to history")]


def verdicts(host: ScriptedExecutor) -> list[VerdictRecord]:
    return [VerdictRecord.model_validate_json(s) for s in host.stdin_of(f"record verdict on {NEW}")]


def colours_recorded(host: ScriptedExecutor) -> list[tuple[str, str, str]]:
    records = [ColorRecord.model_validate_json(s) for s in host.stdin_of("record green")]
    return [(r.color, r.version, r.status) for r in records]


TEARDOWN = [
    f"tear down green ({NEW})",
    "record green",
    f"put {OLDER} back in green (stopped)",
    "record green",
]
POINT_BACK = ["switch proxy", "finish switch"]
RELEASE = "release the deploy lock"


# -- the scenarios --------------------------------------------------------------------


async def test_failure_before_the_switch_tears_down_and_puts_the_good_release_back(
    fleet: Callable[..., Fleet],
) -> None:
    f = fleet(("web1",), switched=False)
    report = FailureReport(phase="smoke", message="/: server error 502", app_fault=True)

    await recover(f.ctx, report)

    assert f.record.outcome == "not_switched"
    assert f.record.exit_code == 1
    assert f.record.notes == []
    web1 = f.hosts["web1"]
    assert web1.steps == [*TEARDOWN, f"record verdict on {NEW}", "append to history", RELEASE]
    down, put_back = web1.ran[0], web1.ran[2]
    assert down.argv[-2:] == ("down", "--remove-orphans")
    assert down.env["COMPOSE_PROJECT_NAME"] == "shop-green"
    assert down.env["GREENLIGHT_VERSION"] == NEW
    assert "--no-start" in put_back.argv
    assert put_back.env["GREENLIGHT_VERSION"] == OLDER
    assert put_back.env["GREENLIGHT_IMAGE"] == f"{IMAGE}@{digest(OLDER)}"
    assert colours_recorded(web1) == [("green", NEW, "removed"), ("green", OLDER, "stopped")]
    [verdict] = verdicts(web1)
    assert (verdict.verdict, verdict.reason) == ("bad", "smoke: /: server error 502")
    [entry] = history(web1)
    assert (entry.result, entry.version, entry.from_version) == ("not_switched", NEW, PREVIOUS)
    assert entry.failure == "/: server error 502"
    assert f.record.hosts["web1"].locked is False
    assert f.messages(Kind.rollback_started) == []


async def test_failure_after_the_switch_points_every_proxy_back_before_the_teardown(
    fleet: Callable[..., Fleet],
) -> None:
    f = fleet(switched=True)
    report = FailureReport(
        phase="monitor", message="unstable: 4 errors, more than the 3 allowed", app_fault=True
    )

    await recover(f.ctx, report)

    assert f.record.outcome == "rolled_back"
    assert f.record.exit_code == 1
    assert f.record.notes == []
    for name, host in f.hosts.items():
        assert host.steps == [
            *POINT_BACK,
            *TEARDOWN,
            f"record verdict on {NEW}",
            "append to history",
            RELEASE,
        ], name
        [upstream] = host.stdin_of("switch proxy")
        live = parse_live(upstream)
        assert live is not None
        assert (live.color, live.version) == ("blue", PREVIOUS)
        assert f"server 127.0.0.1:{BLUE_PORT};" in upstream
        assert str(EPOCH) in host.ran[0].argv  # fenced by our epoch
        # Visitors through this host's proxy get the previous release again.
        assert f.proxies[name].version == PREVIOUS
        assert [e.result for e in history(host)] == ["rolled_back"]
        assert f.record.hosts[name].locked is False
    confirmed = {
        e.host
        for e in f.sink.events
        if e.phase == "rollback" and f"answers {PREVIOUS}" in e.message
    }
    assert confirmed == {"web1", "web2"}
    assert f.messages(Kind.rollback_finished) == [f"traffic is back on {PREVIOUS}"]


async def test_hosts_that_ran_different_releases_each_go_back_to_their_own(
    fleet: Callable[..., Fleet],
) -> None:
    f = fleet(switched=True)
    lagging = "v1.2.5"  # web2 missed the last release
    f.record.hosts["web2"].live_before = color("blue", lagging, "running")
    f.hosts["web2"].apps[BLUE_PORT].version = lagging

    async def unstable(ctx: Context) -> None:
        raise ProbeFailed("unstable: 4 errors, more than the 3 allowed")

    record = await run_deploy_phases(f.ctx, [("monitor", unstable)])

    assert record.outcome == "rolled_back"
    assert (f.proxies["web1"].version, f.proxies["web2"].version) == (PREVIOUS, lagging)
    assert f.messages(Kind.rollback_finished) == ["traffic is back on the previous state"]
    assert f.messages(Kind.deploy_finished) == [
        f"deploy of {NEW} to production failed and was rolled back to the previous state"
    ]


async def test_a_proxy_that_still_serves_the_new_release_is_not_called_rolled_back(
    fleet: Callable[..., Fleet],
) -> None:
    # The reload "succeeds" but the proxy keeps serving NEW: confirm must notice.
    f = fleet(("web1",), switched=True, fail={"web1": {"switch proxy": exits(0)}})
    report = FailureReport(phase="monitor", message="unstable", app_fault=True)

    await recover(f.ctx, report)

    assert f.proxies["web1"].version == NEW
    assert f.record.outcome == "unknown"
    assert f.record.exit_code == 3
    assert f.record.notes[0].startswith("rollback failed: ")
    assert f"did not confirm {PREVIOUS}" in f.record.notes[0]
    assert f"last answer: {NEW}" in f.record.notes[0]
    assert RELEASE not in f.hosts["web1"].steps
    assert f.record.hosts["web1"].locked is True


async def test_a_rollback_that_fails_on_one_host_keeps_every_lock_and_tears_nothing_down(
    fleet: Callable[..., Fleet],
) -> None:
    f = fleet(switched=True, fail={"web2": {"switch proxy": lost("web2")}})
    report = FailureReport(phase="monitor", message="unstable", app_fault=True)

    await recover(f.ctx, report)

    assert f.record.outcome == "unknown"
    assert f.record.exit_code == 3
    assert f.record.notes == [
        "rollback failed: connection lost during switch proxy: Connection reset",
        "locks kept: the final state needs a human look",
    ]
    # web1 was still pointed back: a host is never left half-way because another failed.
    assert f.hosts["web1"].steps[:2] == POINT_BACK
    assert f.proxies["web1"].version == PREVIOUS
    assert f.proxies["web2"].version == NEW
    for name, host in f.hosts.items():
        assert not any(step.startswith(("tear down", "put ")) for step in host.steps), name
        assert RELEASE not in host.steps, name
        assert f.record.hosts[name].locked is True
        assert [e.result for e in history(host)] == ["unknown"]
    assert f.messages(Kind.rollback_finished) == []


def stage_then(error: Callable[[Context], Exception]) -> Phase:
    """A stage phase that starts the new colour on every host, then fails with `error`."""

    async def phase(ctx: Context) -> None:
        for host in ctx.hosts:
            ctx.progress(host).staged = True
        raise error(ctx)

    return phase


def crashed_on_start(ctx: Context) -> Exception:
    web1 = ctx.host("web1")
    start = compose.start(ctx.target_slot(web1), 120)
    return command_failed("web1", start, Result(1, ["container shop-green-web-1 exited (1)"]))


@pytest.mark.parametrize(
    ("error", "blames_release"),
    [
        pytest.param(
            lambda ctx: HostUnreachable("web1", "cannot connect to deploy@10.0.0.5:22: timed out"),
            False,
            id="host unreachable",
        ),
        pytest.param(lambda ctx: Cancelled("cancelled by an operator"), False, id="cancelled"),
        pytest.param(crashed_on_start, True, id="the release crashed on start"),
    ],
)
async def test_only_a_failure_that_blames_the_release_records_it_as_bad(
    fleet: Callable[..., Fleet], error: Callable[[Context], Exception], blames_release: bool
) -> None:
    f = fleet(switched=False, staged=False)

    record = await run_deploy_phases(f.ctx, [("stage", stage_then(error))])

    assert record.outcome == "not_switched"
    assert record.failure is not None
    assert record.failure.app_fault is blames_release
    for name, host in f.hosts.items():
        assert [v.verdict for v in verdicts(host)] == (["bad"] if blames_release else []), name
        assert [e.result for e in history(host)] == ["not_switched"]
        assert host.steps[-1] == RELEASE
        assert f"tear down green ({NEW})" in host.steps
        assert host.closed
    [finished] = [e for e in f.sink.events if e.kind == Kind.deploy_finished]
    assert finished.kind == Kind.deploy_finished
    assert (finished.outcome, finished.exit_code) == ("not_switched", 1)


async def test_a_good_release_that_cannot_be_put_back_is_not_reported_as_the_new_one_running(
    fleet: Callable[..., Fleet],
) -> None:
    f = fleet(("web1",), switched=False, fail={"web1": {"put ": exits(1, "no such image")}})
    report = FailureReport(phase="smoke", message="/: server error 502", app_fault=True)

    await recover(f.ctx, report)

    assert f.record.outcome == "not_switched"
    assert f.hosts["web1"].steps[:3] == TEARDOWN[:3]
    assert colours_recorded(f.hosts["web1"]) == [("green", NEW, "removed")]
    assert f.record.notes == [
        f"web1: {NEW} removed; cleanup unfinished "
        f"(put {OLDER} back in green (stopped) failed (exit 1))"
    ]
    assert f.hosts["web1"].steps[-1] == RELEASE


async def test_a_host_lost_during_cleanup_keeps_its_lock_and_says_how_to_release_it(
    fleet: Callable[..., Fleet],
) -> None:
    f = fleet(switched=False, scripts={"web2": lost("web2")})
    report = FailureReport(phase="verify", message="web1: verify image failed", host="web1")

    await recover(f.ctx, report)

    assert f.record.outcome == "not_switched"
    assert f.record.exit_code == 1
    assert f.hosts["web1"].steps == [*TEARDOWN, "append to history", RELEASE]
    assert f.record.hosts["web1"].locked is False
    # web2 was tried at every step, and every step is accounted for in the notes.
    assert f.hosts["web2"].steps == [f"tear down green ({NEW})", "append to history", RELEASE]
    assert f.record.hosts["web2"].locked is True
    reset = "Connection reset"
    assert f.record.notes == [
        f"web2: {NEW} left running (connection lost during tear down green ({NEW}): {reset})",
        f"web2: outcome not recorded (connection lost during append to history: {reset})",
        f"web2: lock not released (connection lost during {RELEASE}: {reset}); "
        "release it with `greenlight break-lock --env production --yes`",
    ]


async def test_a_failed_first_deployment_with_nothing_to_put_back_keeps_traffic_and_lock(
    fleet: Callable[..., Fleet],
) -> None:
    # Nothing was live and the upstream file was empty: writing it back would leave the
    # proxy with no server at all, so the new colour keeps serving for a human to decide.
    f = fleet(("web1",), switched=True)
    progress = f.record.hosts["web1"]
    progress.live_before, progress.upstream_before, progress.idle_before = None, "", None
    report = FailureReport(phase="monitor", message="unstable", app_fault=True)

    await recover(f.ctx, report)

    assert f.record.outcome == "unknown" and f.record.exit_code == 3
    assert "nothing to put back; the new colour keeps the traffic" in f.record.notes[0]
    host = f.hosts["web1"]
    assert "switch proxy" not in host.steps
    assert not any(step.startswith("tear down") for step in host.steps)
    assert RELEASE not in host.steps and progress.locked
    assert f.proxies["web1"].version == NEW
