"""Run the benchmarks: `python -m bench [NAME ...]`, every one by default (see BENCHES)."""

from __future__ import annotations

import asyncio
import sys
import time

from bench import (
    bot,
    detection,
    four_at_once,
    overhead,
    recovery,
    rollback_time,
    scale,
    ship,
    switch,
    volume,
    webhooks,
    workers,
)
from bench.common import Report

BENCHES = {
    "switch": switch.run,
    "rollback": rollback_time.run,
    "detection": detection.run,
    "overhead": overhead.run,
    "scale": scale.run,
    "volume": volume.run,
    "workers": workers.run,
    "recovery": recovery.run,
    "four": four_at_once.run,
    "bot": bot.run,
    "webhooks": webhooks.run,
    "ship": ship.run,
}


async def main(names: list[str]) -> int:
    report = Report()
    started = time.monotonic()
    for name in names:
        await BENCHES[name](report)
        print(flush=True)
    print(f"summary ({time.monotonic() - started:.0f} s)")
    for f in report.figures:
        value = f"{f.value:.3f}" if isinstance(f.value, float) else str(f.value)
        verdict = "" if f.ok is None else ("ok" if f.ok else "MISSED")
        print(f"| {f.bench} | {f.name} | {value} {f.unit} | {f.target} | {verdict} |")
    return 0 if all(f.ok is not False for f in report.figures) else 1


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(BENCHES)
    unknown = [n for n in chosen if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]}; choose from {', '.join(BENCHES)}")
    raise SystemExit(asyncio.run(main(chosen)))
