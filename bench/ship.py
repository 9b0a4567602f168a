"""Shipping (issue 9): the image, and `compose.bot.yml` on the test bed.

1. the Greenlight image's size, and its build time from the bed's base;
2. cold start: `docker compose up` (Redis, the bot, two workers, the dashboard) until
   the bot answers `/status` in the ops chat (the Bot API emulator);
3. each container's memory at idle, and in a deployment's stability window.

The seed ran from GitHub Actions: no image and no stack of its own to compare with.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import aiohttp

import testbed
from bench.common import Figure, Report
from bot.emulator import running_emulator
from tests.e2e.conftest import Bed
from tests.e2e.test_ship import (
    CHANNEL,
    DANA,
    LOG,
    OPS,
    Chat,
    build_images,
    deployment,
    ended,
    in_phase,
    stack_on_the_bed,
)


async def run(report: Report) -> None:
    print("ship: the image; compose.bot.yml's cold start and memory", flush=True)
    built = build_images()
    report.add(Figure("ship", "Greenlight image (the bed's Debian base)", built.size / 1e6, "MB"))
    report.add(Figure("ship", "image build (cache as it is)", built.seconds, "s"))
    testbed.hosts.reset()
    work = Path(tempfile.mkdtemp(prefix="greenlight-bench-ship-"))
    bed = Bed(testbed.load_info(), work)
    async with running_emulator() as emulator, aiohttp.ClientSession() as session:
        chat = Chat(emulator, session)
        for room in (OPS, LOG, CHANNEL):
            await chat.control("chat", **room)
        async with stack_on_the_bed(bed, emulator, work) as stack:
            started = time.monotonic()
            stack.compose("up", "--detach", "--no-build", "--scale", "worker=2")
            await chat.say(DANA, "/status")
            cold = time.monotonic() - started
            report.add(
                Figure("ship", "cold start: compose up → the bot answers /status", cold, "s")
            )
            await chat.quiet(1.0)
            idle = stack.memory()
            first, card = await deployment(stack, chat, "v1.0.0")
            await in_phase(stack, first, "monitor")
            busy = stack.memory()
            state = await ended(stack, chat, first, card)
    for when, rows in (("at idle", idle), ("in a stability window", busy)):
        used = megabytes(rows)
        for role in ("bot", "worker", "redis"):
            report.add(
                Figure("ship", f"memory {when}: {role} (largest)", used.get(role, 0.0), "MB")
            )
        print(f"      {rows}", flush=True)
    print(f"      the deployment ended {state}", flush=True)
    testbed.hosts.reset()


UNITS = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024**2}


def megabytes(rows: str) -> dict[str, float]:
    """`docker stats` rows ("bot-1 123.4MiB, worker-2 51MiB") → the largest per role."""
    found: dict[str, float] = {}
    for row in rows.split(", "):
        name, _, usage = row.partition(" ")
        role = name.rsplit("-", 1)[0]
        unit = next(u for u in UNITS if usage.endswith(u))
        value = float(usage.removesuffix(unit)) * UNITS[unit]
        found[role] = max(found.get(role, 0.0), value)
    return found
