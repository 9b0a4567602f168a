"""`greenlight deploy | rollback | status | ...`: the engine in-process, or on the workers.

Exit codes: 0 the new version is live (or the command did what it said); 1 the
deployment failed and production is on the previous version; 2 refused before
anything was touched; 3 the final state is unknown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from deploy.events import DeployFinished, Event
    from deploy.spec import Spec

EXIT_REFUSED = 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="greenlight", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--app", help="app, when the config is a directory of several specs")
    common.add_argument("--env", help="environment from the spec (default: its default)")
    common.add_argument(
        "--config",
        help="spec file, or a directory of them (default: $GREENLIGHT_CONFIG or greenlight.yml)",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="hide remote command output")
    sub = top.add_subparsers(dest="command", required=True)
    deploy = sub.add_parser("deploy", parents=[common], help="run the whole pipeline")
    deploy.add_argument("version", help="semver, e.g. v1.0.1")
    deploy.add_argument("--who", help="who asked (default: $GREENLIGHT_WHO or your login)")
    deploy.add_argument(
        "--queue",
        action="store_true",
        help="run it on the workers (REDIS_URL) and follow it here",
    )
    deploy.add_argument(
        "--skip-tests",
        action="store_true",
        help="do not run the test hook (emergencies only; recorded in history)",
    )
    rollback = sub.add_parser("rollback", parents=[common], help="go back to the previous version")
    rollback.add_argument("--to", help="the version to go back to")
    rollback.add_argument("--who", help="who asked")
    rollback.add_argument(
        "--queue", action="store_true", help="run it on the workers (REDIS_URL) and follow it"
    )
    status = sub.add_parser("status", parents=[common], help="what runs where")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    history = sub.add_parser("history", parents=[common], help="the last deployments")
    history.add_argument("-n", type=int, default=20, help="how many (default 20)")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("apps", parents=[common], help="apps, environments and their policy")
    # Steering deployments on the workers (REDIS_URL); each is in the audit trail.
    for name, text in (
        ("cancel", "stop the deployment in progress (torn down, or rolled back if switched)"),
        ("promote", "let a deployment held after smoke (promote: manual) switch"),
    ):
        sub.add_parser(name, parents=[common], help=text).add_argument("--who", help="who asks")
    for name, text in (("approve", "approve a request"), ("reject", "reject a request")):
        verdict = sub.add_parser(name, parents=[common], help=text)
        verdict.add_argument("deployment", help="the request's id (the bot and --queue show it)")
        verdict.add_argument("--who", help="who decides (default: $GREENLIGHT_WHO or your login)")
        if name == "reject":
            verdict.add_argument("--reason", default="", help="why, for the requester")
    lock = sub.add_parser("lock", parents=[common], help="block deploys until unlocked")
    lock.add_argument("reason", nargs="+", help="why, for whoever tries to deploy")
    lock.add_argument("--who", help="who locks")
    unlock = sub.add_parser("unlock", parents=[common], help="lift a lock set with `lock`")
    unlock.add_argument("--who", help="who unlocks")
    unlock.add_argument("--force", action="store_true", help="lift someone else's lock (audited)")
    trail = sub.add_parser("audit", help="the audit trail in Redis (REDIS_URL)")
    trail.add_argument("-n", type=int, default=50, help="how many entries (default 50)")
    sub.add_parser(
        "bot", help="run the Telegram bot (long polling, or a webhook; GREENLIGHT_* settings)"
    )
    worker = sub.add_parser("worker", help="run phase jobs from Redis (REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    probe = sub.add_parser(
        "healthcheck", help="exit 0 when this container's bot or worker is healthy (HEALTHCHECK)"
    )
    probe.add_argument(
        "role", nargs="?", choices=("bot", "worker"), help="default: the container's main process"
    )
    breaker = sub.add_parser(
        "break-lock", parents=[common], help="break a stale host lock (status shows it)"
    )
    breaker.add_argument("--yes", action="store_true", help="really break it")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problem = configure_logs(args.command)
    if problem:
        print(f"greenlight: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    if args.command == "audit":
        return _audit(args.n)
    if args.command == "bot":
        from bot.app import main as run_bot

        return run_bot()
    if args.command == "healthcheck":
        from greenlight.healthcheck import check

        return check(args.role)
    if args.command == "worker":
        from jobs.exporter import ExporterError
        from jobs.queue import run_worker

        try:
            return 0 if run_worker(burst=args.burst) else 1
        except ExporterError as exc:
            print(f"greenlight worker: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    from deploy.settings import EngineSettings
    from deploy.spec import SpecError, choose_app, load_specs

    settings = EngineSettings()
    try:
        specs = load_specs(args.config)
    except SpecError as exc:
        print(f"greenlight: invalid spec: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.command in STEERING or getattr(args, "queue", False):
        return _steer(specs, args, settings)
    try:
        spec = choose_app(specs, args.app)
    except SpecError as exc:
        print(f"greenlight: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        if args.command == "status":
            return asyncio.run(_status(spec, args.env, args.json))
        if args.command == "history":
            return asyncio.run(_history(spec, args.env, args.n, args.json))
        if args.command == "break-lock":
            return asyncio.run(_break_lock(spec, args.env, args.yes))
        return asyncio.run(_run(spec, args, settings))
    except SpecError as exc:
        print(f"greenlight: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except BrokenPipeError:  # `greenlight status | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("greenlight: interrupted; run `greenlight status` to see the state", file=sys.stderr)
        return 3


def configure_logs(command: str) -> str | None:
    """Logging for this process (deploy.logs): the bot and workers at INFO, the
    command line at WARNING (it prints its own lines); every secret value the process
    knows is redacted, and in the bot secret-looking text too. The problem, if any."""
    from deploy.events import Redactor
    from deploy.logs import LogSettingError, configure, known_secrets, secret_values

    secrets = known_secrets()
    redact = Redactor(secrets)
    if command == "bot":
        from bot.notify import Scrubber
        from bot.settings import SettingsError, load_settings

        with contextlib.suppress(SettingsError):  # the bot reports a bad setting itself
            secrets += secret_values(load_settings())
        redact = Scrubber(secrets)
    try:
        configure(redact, default_level="INFO" if command in ("bot", "worker") else "WARNING")
    except LogSettingError as exc:
        return str(exc)
    return None


STEERING = {"apps", "cancel", "promote", "approve", "reject", "lock", "unlock"}
# How a request that ended without an engine run (rejected, cancelled while awaiting
# approval, refused at the door) exits, like the in-process codes.
REQUEST_EXIT = {"rejected": EXIT_REFUSED, "refused": EXIT_REFUSED, "cancelled": 1}


def _steer(specs: dict[str, Spec], args: argparse.Namespace, settings: Any) -> int:
    """The commands that go through the jobs API (REDIS_URL): each answer is one line,
    refusals exit 2 with the reason; `--queue` then follows the request to its end."""
    from jobs import api
    from jobs.queue import connect
    from jobs.streams import last_event_id

    connection = connect()
    who = getattr(args, "who", None) or settings.operator()
    if args.command == "apps":
        for target in api.targets(connection, specs):
            mark = "*" if target.default else " "
            lock = (
                f"  locked by {target.locked.who}: {target.locked.reason}" if target.locked else ""
            )
            busy = f"  deploying {target.deploying}" if target.deploying else ""
            print(
                f"{mark} {target.app}/{target.env:<12} {len(target.hosts)} host(s)  "
                f"approval {target.approval}, promote {target.promote}{lock}{busy}"
            )
        return 0
    since = last_event_id(connection)
    where = {"app": args.app, "env": args.env}
    if args.command == "deploy":
        answer = api.request_deployment(
            connection, specs, **where, version=args.version, who=who, skip_tests=args.skip_tests
        )
    elif args.command == "rollback":
        answer = api.rollback(connection, specs, **where, who=who, to=args.to)
    elif args.command == "approve":
        answer = api.approve(connection, args.deployment, who)
    elif args.command == "reject":
        answer = api.reject(connection, args.deployment, who, args.reason)
    elif args.command == "lock":
        answer = api.lock(connection, specs, **where, who=who, reason=" ".join(args.reason))
    elif args.command == "unlock":
        answer = api.unlock(connection, specs, **where, who=who, force=args.force)
    elif args.command == "promote":
        answer = api.promote(connection, specs, **where, who=who)
    else:
        answer = api.cancel(connection, specs, **where, who=who)
    if not answer.accepted:
        print(f"greenlight: {args.command} refused: {answer.reason}", file=sys.stderr)
        return EXIT_REFUSED
    said = {
        "cancel": "cancelling {id}; production is put back as it was",
        "promote": "promoting {id}: the switch comes next",
        "approve": "approved {id}; it is queued",
        "reject": "rejected {id}",
        "lock": "locked: no deployment starts until `greenlight unlock`",
        "unlock": "unlocked",
    }.get(args.command, "{command}: {id} {state}")
    state = (answer.state or "").replace("_", " ")
    text = said.format(id=answer.deployment, state=state, command=args.command)
    print(f"greenlight: {text}", file=sys.stderr, flush=True)
    if answer.state == "awaiting_approval":
        print(
            f"greenlight: someone other than {who} approves it with "
            f"`greenlight approve {answer.deployment}`",
            file=sys.stderr,
            flush=True,
        )
    if not getattr(args, "queue", False) or answer.deployment is None:
        return 0
    return _follow(connection, answer.deployment, since, specs, args, settings)


def _follow(
    connection: Any,
    deployment: str,
    since: str,
    specs: dict[str, Spec],
    args: argparse.Namespace,
    settings: Any,
) -> int:
    """Print the request's events as they come, with the same lines and exit codes as
    an in-process run. Ctrl-C cancels it; a second Ctrl-C stops following."""
    from deploy.events import Kind
    from jobs.api import cancel
    from jobs.records import FINAL
    from jobs.streams import read_events

    printer = Printer(quiet=args.quiet)
    cancelled = False
    engine_exit: int | None = None
    ended_at = 0.0
    while True:
        try:
            for entry, event in read_events(connection, after=since, block_ms=1000):
                since = entry
                if event.deployment != deployment:
                    continue
                asyncio.run(printer.emit(event))
                if event.kind == Kind.deploy_finished:
                    engine_exit, ended_at = event.exit_code, time.monotonic()
                if event.kind == Kind.request and event.state in FINAL:
                    return REQUEST_EXIT.get(event.state, 0) if engine_exit is None else engine_exit
            # The request's own last word follows the engine's at once; never wait long.
            if engine_exit is not None and time.monotonic() - ended_at > 5:
                return engine_exit
        except KeyboardInterrupt:
            if cancelled:  # a second Ctrl-C: stop following, the workers carry on
                print(f"greenlight: stopped following {deployment}", file=sys.stderr)
                return 3
            cancelled = True
            who = getattr(args, "who", None) or settings.operator()
            answer = cancel(connection, specs, app=args.app, env=args.env, who=who)
            text = "production is put back as it was" if answer.accepted else answer.reason
            print(f"greenlight: cancelling {deployment}: {text}", file=sys.stderr, flush=True)


def _audit(last: int) -> int:
    from jobs.queue import connect
    from jobs.streams import read_audit

    for entry in read_audit(connect(), last=max(1, last)):
        reason = f": {entry.reason}" if entry.reason else ""
        about = f"{entry.target} {entry.deployment}" if entry.deployment else entry.target
        print(
            f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.who:<12} {entry.action:<9} "
            f"{entry.result:<8} {about}{reason}"
        )
    return 0


async def _history(spec: Spec, env_name: str | None, last: int, as_json: bool) -> int:
    """The last deployments, merged across hosts, from the history each host keeps whole."""
    from deploy.status import collect_status, render_history

    status = await collect_status(spec, env_name, history=max(1, min(last, 10_000)))
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in status.history], indent=2))
    else:
        for line in render_history(status.history):
            print(line)
    return 0 if status.all_reachable else 3


async def _run(spec: Spec, args: argparse.Namespace, settings: Any) -> int:
    from deploy.pipeline import deploy, rollback

    notice = local_host_notice(spec, args.env)
    if notice:
        print(notice, file=sys.stderr, flush=True)
    sink = Printer(quiet=args.quiet)  # the engine redacts secrets from every event
    who = args.who or settings.operator()
    password = settings.registry_password.get_secret_value() if settings.registry_password else None
    cancel = CancelOnSignal()
    if args.command == "deploy":
        record = await deploy(
            spec,
            args.env,
            args.version,
            who,
            sink,
            registry_password=password,
            cancel=cancel.requested,
            skip_tests=args.skip_tests,
        )
    else:
        record = await rollback(
            spec,
            args.env,
            who,
            sink,
            to=args.to,
            registry_password=password,
            cancel=cancel.requested,
        )
    return record.exit_code


def local_host_notice(spec: Spec, env_name: str | None) -> str | None:
    """One line for an environment whose hosts include `address: local`, so nobody
    mistakes this machine running the hooks for a remote host."""
    from deploy.spec import SpecError

    try:
        env = spec.environment(env_name)
    except SpecError:
        return None  # the pipeline refuses an unknown environment in its own words
    local = [host.name for host in env.hosts if host.address == "local"]
    if not local:
        return None
    names = ", ".join(local)
    return f"greenlight: {names} (address: local) run commands on this machine, without SSH"


class CancelOnSignal:
    """Ctrl-C or SIGTERM asks the deployment to unwind (tear down, or roll back if it
    switched) at its next step; a second one abandons it with the state unknown."""

    def __init__(self) -> None:
        self.asked = False
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signal)

    def _signal(self) -> None:
        if self.asked:
            print("greenlight: abandoned; the final state is unknown", file=sys.stderr, flush=True)
            os._exit(3)
        self.asked = True
        print(
            "greenlight: cancelling; production is put back as it was "
            "(press Ctrl-C again to abandon)",
            file=sys.stderr,
            flush=True,
        )

    async def requested(self) -> bool:
        return self.asked


class Printer:
    """One line per event, as it happens."""

    def __init__(self, out: TextIO = sys.stdout, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet

    async def emit(self, event: Event) -> None:
        from deploy.events import Kind

        if event.kind == Kind.output and self.quiet:
            return
        stamp = datetime.fromtimestamp(event.at).strftime("%H:%M:%S")
        where = f"{event.phase or '':<9} {event.host or '':<4}"
        mark = {
            Kind.phase_started: "▶",
            Kind.phase_finished: "✔",
            Kind.phase_failed: "✘",
            Kind.rollback_started: "↩",
            Kind.rollback_finished: "↩",
            Kind.warning: "!",
            Kind.output: "│",
            Kind.metrics: "≈",
            Kind.request: "•",
        }.get(event.kind, "·")
        text = event.message
        if event.kind == Kind.phase_finished:
            text = f"{event.phase} done in {event.seconds:.2f} s"
        print(f"{stamp} {where} {mark} {text}", file=self.out, flush=True)
        if event.kind == Kind.deploy_finished:
            self._final(event)

    def _final(self, event: DeployFinished) -> None:
        if event.failure and event.outcome != "refused":
            for line in event.failure.lines():
                print(f"    {line}", file=self.out)
        for note in event.notes:
            print(f"    note: {note}", file=self.out)
        if event.phases:
            timing = ", ".join(f"{k} {v:.1f}s" for k, v in event.phases.items())
            print(f"    phases: {timing}", file=self.out)
        print(f"    exit {event.exit_code}", file=self.out, flush=True)


async def _status(spec: Spec, env_name: str | None, as_json: bool) -> int:
    from deploy.status import collect_status, render_status

    status = await collect_status(spec, env_name)
    if as_json:
        print(status.model_dump_json(indent=2))
    else:
        for line in render_status(status):
            print(line)
    return 0 if status.all_reachable else 3


async def _break_lock(spec: Spec, env_name: str | None, yes: bool) -> int:
    from deploy.status import break_locks

    if not yes:
        print("greenlight: breaking a lock can let two deployments collide; add --yes")
        return EXIT_REFUSED
    lines = await break_locks(spec, env_name)
    for line in lines:
        print(line)
    _audit_admin(f"{spec.app}/{spec.environment(env_name).name}", "; ".join(lines))
    return 0


def _audit_admin(target: str, what: str) -> None:
    """Breaking host locks is an admin action: into the audit trail when Redis is there
    (the in-process mode also runs without it, and says so)."""
    import redis

    from deploy.settings import EngineSettings
    from jobs.queue import connect
    from jobs.streams import AuditEntry, audit

    try:
        audit(
            connect(timeout=2),
            AuditEntry(
                who=EngineSettings().operator(),
                action="break-lock",
                target=target,
                result="accepted",
                reason=what[:500],
            ),
        )
    except redis.RedisError as exc:
        print(f"greenlight: not in the audit trail (Redis: {exc})", file=sys.stderr)
