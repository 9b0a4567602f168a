"""GitHub's webhook (issue 8), on the test bed's Redis with the Bot API emulator:

1. webhook → card: a signed `release` delivery POSTed to the running bot (`serve`:
   its HTTP server, the relay and the progress consumer) until the ops chat shows the
   request's card with Approve and Reject, p50/p95 over 30 releases (each request
   cancelled before the next, so the environment is free). The emulator's pacing is
   off here: with it, Telegram's 20 messages a minute in a group would be measured.
2. the endpoint's throughput: signed deliveries verified, triaged, deduplicated and
   queued per second, 16 concurrent senders, every delivery sent ten times (so one in
   ten is queued and nine are answered as duplicates), against the same endpoint
   refusing unsigned deliveries (the least it can do per request).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import aiohttp
import redis
from aiohttp import web

from bench.common import Figure, Report
from bot.emulator import running_emulator
from bot.github.intake import DELIVERIES_KEY, GitHubIntake
from bot.settings import BotSettings
from deploy.spec import Spec, parse_spec
from jobs import api
from testbed import paths
from tests.bot.running import serving
from tests.github_payloads import headers, release
from tests.redis_server import free_port

REDIS_URL = f"redis://127.0.0.1:{paths.REDIS_PORT}/9"
SECRET = "bench-webhook-secret"  # noqa: S105 (the benchmark's own)
REPO = "acme/shop"
OPS = {"id": -100500, "type": "supergroup", "title": "ops"}
CARDS = 30
DELIVERIES = 2_000
COPIES = 10
SENDERS = 16


def shop() -> dict[str, Spec]:
    env = {"public_url": "http://127.0.0.1:9", "ssh": {"key": "k", "known_hosts": "kh"}}
    spec = parse_spec(
        {
            "app": "shop",
            "image": "127.0.0.1:5000/acme/shop",
            "environments": {"production": {**env, "hosts": [{"name": "h1", "address": "x"}]}},
            "github": {"repository": REPO, "release": {"environment": "production"}},
        }
    )
    return {"shop": spec}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def card_latencies(connection: redis.Redis, specs: dict[str, Spec]) -> list[float]:
    port = free_port()
    async with running_emulator(pacing=False) as emulator, aiohttp.ClientSession() as session:
        control = emulator.control_url
        await session.post(f"{control}/chat", json=OPS)
        settings = BotSettings(
            GREENLIGHT_BOT_TOKEN=emulator.token,
            GREENLIGHT_TELEGRAM_API=emulator.url,
            GREENLIGHT_OPS_CHAT=OPS["id"],
            GREENLIGHT_HTTP_PORT=port,
            GREENLIGHT_GITHUB_SECRET=SECRET,
            REDIS_URL=REDIS_URL,
        )
        latencies = []
        async with serving(settings, specs, connection) as base:
            url = f"{base}/webhooks/github"
            for n in range(CARDS):
                tag = f"v2.{n}.0"
                body = json.dumps(release(REPO, tag, release_id=1000 + n)).encode()
                sent = time.time()
                async with session.post(url, data=body, headers=headers("release", body, SECRET)):
                    pass
                card = await _card(session, control, tag)
                latencies.append(card["times"][0] - sent)
                answer = await asyncio.to_thread(
                    api.cancel, connection, specs, app="shop", env="production", who="bench"
                )
                assert answer.accepted, answer
    return latencies


async def _card(session: aiohttp.ClientSession, control: str, tag: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with session.post(f"{control}/transcript", json={"chat_id": OPS["id"]}) as answer:
            messages = (await answer.json())["result"]["messages"]
        for message in messages:
            if f"deploy of {tag} to" in message["text"] and message["buttons"]:
                return dict(message)
        await asyncio.sleep(0.005)
    raise RuntimeError(f"no card for {tag}")


async def throughput(
    connection: redis.Redis, specs: dict[str, Spec], signed: bool
) -> tuple[float, dict[int, int]]:
    """Deliveries answered per second by the endpoint alone, and the answers' counts."""
    connection.delete(DELIVERIES_KEY)
    app = web.Application(client_max_size=1024**2)
    GitHubIntake(SECRET, connection, specs).register(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/webhooks/github"
    batch = uuid.uuid4().hex[:8]
    bodies = []
    for n in range(DELIVERIES // COPIES):
        body = json.dumps(release(REPO, f"v3.{n}.0", release_id=5000 + n)).encode()
        sent = headers("release", body, SECRET if signed else None, f"{batch}-{n:05d}")
        bodies += [(body, sent)] * COPIES
    counts: dict[int, int] = {}
    work = asyncio.Queue[tuple[bytes, dict[str, str]]]()
    for item in bodies:
        work.put_nowait(item)

    async def sender(session: aiohttp.ClientSession) -> None:
        while not work.empty():
            body, sent = work.get_nowait()
            async with session.post(url, data=body, headers=sent) as response:
                await response.read()
                counts[response.status] = counts.get(response.status, 0) + 1

    try:
        async with aiohttp.ClientSession() as session:
            started = time.perf_counter()
            await asyncio.gather(*(sender(session) for _ in range(SENDERS)))
            took = time.perf_counter() - started
    finally:
        await runner.cleanup()
    return len(bodies) / took, counts


async def run(report: Report) -> None:
    print("webhooks: GitHub release → card; the endpoint's throughput", flush=True)
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    specs = shop()
    try:
        latencies = await card_latencies(connection, specs)
        report.add(
            Figure(
                "webhooks",
                "release webhook → card in the ops chat, p50",
                statistics.median(latencies) * 1000,
                "ms",
            )
        )
        report.add(
            Figure(
                "webhooks",
                "release webhook → card in the ops chat, p95",
                p95(latencies) * 1000,
                "ms",
                "≤ 1000 ms (GitHub waits 10 s)",
                p95(latencies) <= 1.0,
                f"{CARDS} releases, emulator pacing off",
            )
        )
        rate, counts = await throughput(connection, specs, signed=True)
        queued = connection.xlen(DELIVERIES_KEY)
        report.add(
            Figure(
                "webhooks",
                "signed deliveries verified + deduplicated per second",
                rate,
                "/s",
                detail=f"{DELIVERIES} deliveries ({COPIES} copies each), {SENDERS} senders: "
                f"answers {dict(sorted(counts.items()))}, {queued} queued",
            )
        )
        refused, counts = await throughput(connection, specs, signed=False)
        report.add(
            Figure(
                "webhooks",
                "baseline: unsigned deliveries refused per second",
                refused,
                "/s",
                detail=f"answers {dict(sorted(counts.items()))}",
            )
        )
    finally:
        connection.flushdb()
        connection.close()
