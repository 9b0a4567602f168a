"""`greenlight deploy | rollback | status | unlock`: the engine in-process, no RQ, no chat.

Exit codes: 0 the new version is live (or the command did what it said); 1 the
deployment failed and production is on the previous version; 2 refused before
anything was touched; 3 the final state is unknown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
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
    status = sub.add_parser("status", parents=[common], help="what runs where")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    cancel = sub.add_parser(
        "cancel", parents=[common], help="stop the deployment running on the workers"
    )
    cancel.add_argument("--who", help="who asked")
    history = sub.add_parser("history", parents=[common], help="the last deployments")
    history.add_argument("-n", type=int, default=20, help="how many (default 20)")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    trail = sub.add_parser("audit", help="the audit trail in Redis (REDIS_URL)")
    trail.add_argument("-n", type=int, default=50, help="how many entries (default 50)")
    worker = sub.add_parser("worker", help="run phase jobs from Redis (REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    unlock = sub.add_parser("unlock", parents=[common], help="break a stale deploy lock")
    unlock.add_argument("--yes", action="store_true", help="really break it")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "audit":
        return _audit(args.n)
    if args.command == "worker":
        from jobs.queue import run_worker

        return 0 if run_worker(burst=args.burst) else 1
    from deploy.settings import EngineSettings
    from deploy.spec import SpecError, choose_app, load_specs

    settings = EngineSettings()
    try:
        specs = load_specs(args.config)
    except SpecError as exc:
        print(f"greenlight: invalid spec: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.command == "deploy" and args.queue:
        return _queued(specs, args, settings)
    if args.command == "cancel":
        return _cancel(specs, args, settings)
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
        if args.command == "unlock":
            return asyncio.run(_unlock(spec, args.env, args.yes))
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


def _queued(specs: dict[str, Spec], args: argparse.Namespace, settings: Any) -> int:
    """Request the deployment from the workers, then print its events as they come, with
    the same lines and exit codes as an in-process run."""
    from deploy.events import Kind
    from jobs.api import request_deployment
    from jobs.queue import connect
    from jobs.streams import last_event_id, read_events

    connection = connect()
    since = last_event_id(connection)
    answer = request_deployment(
        connection,
        specs,
        app=args.app,
        env=args.env,
        version=args.version,
        who=args.who or settings.operator(),
        skip_tests=args.skip_tests,
    )
    if answer.result == "refused":
        print(f"greenlight: refused: {answer.reason}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"greenlight: {answer.deployment} queued", file=sys.stderr, flush=True)
    printer = Printer(quiet=args.quiet)
    cancelled = False
    while True:
        try:
            for entry, event in read_events(connection, after=since, block_ms=1000):
                since = entry
                if event.deployment != answer.deployment:
                    continue
                asyncio.run(printer.emit(event))
                if event.kind == Kind.deploy_finished:
                    return event.exit_code
        except KeyboardInterrupt:
            if cancelled:  # a second Ctrl-C: stop following, the workers carry on
                print(f"greenlight: stopped following {answer.deployment}", file=sys.stderr)
                return 3
            cancelled = True
            _cancel(specs, args, settings)


def _audit(last: int) -> int:
    from jobs.queue import connect
    from jobs.streams import read_audit

    for entry in read_audit(connect(), last=max(1, last)):
        reason = f": {entry.reason}" if entry.reason else ""
        print(
            f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.who:<12} {entry.action:<9} "
            f"{entry.result:<8} {entry.target}{reason}"
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


def _cancel(specs: dict[str, Spec], args: argparse.Namespace, settings: Any) -> int:
    from jobs.api import cancel
    from jobs.queue import connect

    answer = cancel(
        connect(), specs, app=args.app, env=args.env, who=args.who or settings.operator()
    )
    if answer.result == "refused":
        print(f"greenlight: cancel refused: {answer.reason}", file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"greenlight: cancelling {answer.deployment}; production is put back as it was",
        file=sys.stderr,
        flush=True,
    )
    return 0


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


async def _unlock(spec: Spec, env_name: str | None, yes: bool) -> int:
    from deploy.status import break_locks

    if not yes:
        print("greenlight: breaking a lock can let two deployments collide; add --yes")
        return EXIT_REFUSED
    for line in await break_locks(spec, env_name):
        print(line)
    return 0
