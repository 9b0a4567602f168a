"""`scripts/testbed`: up, down, reset, host-down, host-up, status."""

from __future__ import annotations

import argparse
import json
import sys

from . import bed, hosts
from .util import TestbedError, fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/testbed",
        description="The Greenlight local test bed: simulated hosts on 127.0.0.x with their own "
        "sshd, Docker engine and nginx, plus Redis, a registry and a public load balancer.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="install what is missing and start everything")
    p_up.add_argument(
        "--hosts",
        type=int,
        default=None,
        metavar="N",
        help="number of hosts, 1-10 (default: the largest used so far, or 1)",
    )
    p_down = sub.add_parser("down", help="stop every process and mount of the test bed")
    p_down.add_argument(
        "--purge",
        action="store_true",
        help="also delete state (engines' data, registry, users, .testbed/); "
        "keeps the download cache",
    )
    p_reset = sub.add_parser("reset", help="reset hosts to fresh (default: all)")
    p_reset.add_argument("names", nargs="*", metavar="NAME")
    p_hd = sub.add_parser("host-down", help="stop a host's sshd and drop its SSH sessions")
    p_hd.add_argument("name")
    p_hu = sub.add_parser("host-up", help="start a host's sshd again")
    p_hu.add_argument("name")
    p_status = sub.add_parser("status", help="show what is running (exit 1 if anything is not)")
    p_status.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _print_status(report: dict) -> None:  # type: ignore[type-arg]
    def mark(ok: object) -> str:
        return "up" if ok else "DOWN"

    print(f"root      {report['root']}  ({report['hosts_configured']} hosts)")
    print(f"redis     {mark(report['redis'])}  redis://127.0.0.1:6379/0")
    print(f"registry  {mark(report['registry'])}  http://127.0.0.1:5000")
    print(f"builder   {mark(report['builder'])}")
    print(f"lb        {mark(report['lb'])}  http://127.0.0.1:8080")
    print(f"compose   {'installed' if report['compose_plugin'] else 'MISSING'}")
    for h in report["hosts"]:
        live = ", ".join(h["live"]) or "nothing live"
        containers = ", ".join(h["containers"]) or "no containers"
        print(
            f"{h['name']:<4} {h['address']:<10} sshd {mark(h['sshd']):<4} nginx "
            f"{mark(h['nginx']):<4} docker {mark(h['docker']):<4} | {live} | {containers}"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            bed.up(args.hosts)
        elif args.command == "down":
            bed.down(purge=args.purge)
        elif args.command == "reset":
            hosts.reset(args.names or None)
        elif args.command == "host-down":
            hosts.host_down(args.name)
        elif args.command == "host-up":
            hosts.host_up(args.name)
        elif args.command == "status":
            report = bed.status()
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                _print_status(report)
            return 0 if bed.healthy(report) else 1
    except (TestbedError, ValueError) as exc:
        fail(str(exc))
        return 1
    except KeyboardInterrupt:
        fail("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
