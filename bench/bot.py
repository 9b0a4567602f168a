"""The bot as the ops chat feels it (issue 7), with `greenlight bot` and a worker as
their own processes and the Bot API emulator as Telegram:

1. command → first reply, p50/p95, over commands that touch Redis and the spec;
   and event → progress edit: each phase event until the progress message shows it;
2. the messages and edits one approved deployment costs, against Telegram's limits
   (20 a minute in a group), and the 429s the emulator had to send;
3. the bot process's resident memory while the deployment runs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import aiohttp
import redis

from bench.common import WORK, Figure, Report, deploy_ok, fresh
from bot.emulator import running_emulator
from deploy.events import Kind
from deploy.spec import load_spec
from jobs.records import RecordStore
from jobs.streams import read_events
from testbed import paths, rehearsal

REDIS_URL = f"redis://127.0.0.1:{paths.REDIS_PORT}/8"
COMMANDS = ["/envs", "/history", "/help", "/history production 5", "/deploy v1.0;rm", "/status"] * 2
# Telegram allows a bot about 20 messages a minute in a group: the commands are spaced so
# that their replies stay under it, after a minute's rest from the deployment's messages.
SPACING = 3.5
PHASE_EVENTS = {Kind.phase_started, Kind.phase_finished, Kind.deploy_finished}
GROUP_PER_MINUTE = 20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


async def command_latencies(chat: rehearsal.Chat) -> list[float]:
    """Seconds from each command's arrival at "Telegram" to the bot's first reply."""
    latencies = []
    for text in COMMANDS:
        await asyncio.sleep(SPACING)
        reply = await chat.say(rehearsal.DANA, text)
        asked = next(m for m in reversed(await chat.messages(rehearsal.OPS)) if m["text"] == text)
        latencies.append(reply["times"][0] - asked["times"][0])
    return latencies


def busiest_minute(times: list[float]) -> int:
    """The most sends and edits in any 60 s window."""
    times = sorted(times)
    return max(
        (sum(1 for t in times[i:] if t - start < 60) for i, start in enumerate(times)), default=0
    )


async def run(report: Report) -> None:
    print("bot: command replies, progress edits, volume and memory (1 host, 1 worker)")
    fresh()
    await deploy_ok(load_spec(rehearsal.config()), "v1.0.0")
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    records = RecordStore(connection)
    logs = WORK / "bot"
    logs.mkdir(exist_ok=True)
    async with running_emulator() as emulator, aiohttp.ClientSession() as session:
        chat = rehearsal.Chat(emulator, session)
        for room in (rehearsal.OPS, rehearsal.LOG, rehearsal.CHANNEL):
            await chat.control("chat", **room)
        with rehearsal.processes(emulator, logs, REDIS_URL) as started:
            await chat.say(rehearsal.DANA, "/help")
            bot_pid = started.running["bot"].pid
            idle = rss_mb(bot_pid)
            before = await chat.control("counters")
            samples: list[float] = []
            sampling = True

            async def sample() -> None:
                while sampling:
                    samples.append(rss_mb(bot_pid))
                    await asyncio.sleep(0.2)

            sampler = asyncio.create_task(sample())
            state = await rehearsal.deploy(chat, records, "v1.0.1", quiet=True)
            sampling = False
            await sampler
            after = await chat.control("counters")
            record = records.recent(rehearsal.APP, rehearsal.ENV, 1)[0]
            events = [
                e
                for _, e in read_events(connection, count=100_000)
                if e.deployment == record.id and e.kind in PHASE_EVENTS
            ]
            rooms = {
                name: [m for m in await chat.messages(room) if m["from_bot"]]
                for name, room in (("ops", rehearsal.OPS), ("channel", rehearsal.CHANNEL))
            }
            last = max(t for m in rooms["ops"] for t in m["times"])
            await asyncio.sleep(max(0.0, last + 60 - time.time()))
            latencies = await command_latencies(chat)
    if state != "live":
        raise SystemExit(f"bench bot: the deployment ended {state}")
    ops = rooms["ops"]
    progress = max(ops, key=lambda m: len(m["times"]))
    edit_lags = []
    for e in events:
        shown = [t for t in progress["times"] if t >= e.at]
        if shown:
            edit_lags.append(shown[0] - e.at)
    since = min(t for m in ops for t in m["times"] if t >= events[0].at) if events else 0
    deployment_times = [t for m in ops for t in m["times"] if t >= since]
    ms = [x * 1000 for x in latencies]
    report.add(Figure("bot", "command → first reply, p50", statistics.median(ms), "ms"))
    report.add(
        Figure(
            "bot",
            "command → first reply, p95",
            p95(ms),
            "ms",
            "≤ 300",
            p95(ms) <= 300,
            f"{len(ms)} commands: {', '.join(sorted(set(COMMANDS)))}",
        )
    )
    lag_ms = [x * 1000 for x in edit_lags]
    report.add(Figure("bot", "phase event → progress edit, p50", statistics.median(lag_ms), "ms"))
    report.add(
        Figure(
            "bot",
            "phase event → progress edit, p95",
            p95(lag_ms),
            "ms",
            detail=f"{len(lag_ms)} events; edits paced to about 1 a second per chat",
        )
    )
    report.add(
        Figure(
            "bot",
            "ops chat: messages + edits for one deployment",
            len(deployment_times),
            "",
            detail=f"progress message edited "
            f"{len(progress['times']) - 1}×; channel: {len(rooms['channel'])} message(s)",
        )
    )
    busiest = busiest_minute(deployment_times)
    report.add(
        Figure(
            "bot",
            "ops chat: busiest minute",
            busiest,
            "",
            f"≤ {GROUP_PER_MINUTE}",
            busiest <= GROUP_PER_MINUTE,
        )
    )
    too_many = after["too_many_requests"] - before["too_many_requests"]
    report.add(
        Figure(
            "bot", "429s from the emulator during the deployment", too_many, "", "0", too_many == 0
        )
    )
    report.add(Figure("bot", "bot resident memory, idle", idle, "MB"))
    peak = max(samples)
    report.add(
        Figure(
            "bot",
            "bot resident memory, peak during the deployment",
            peak,
            "MB",
            "≤ 150",
            peak <= 150,
        )
    )
