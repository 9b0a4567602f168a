"""Greenlight as a team ships it: the image, built from the test bed's local base on
the builder engine, and `compose.bot.yml` running the bot, two workers, Redis and the
dashboard in containers (the bed's override puts them on the host's network). The bot
talks to the Bot API emulator, the workers deploy to the bed's hosts over SSH.

The image is built once per session and shared; a rebuild with nothing changed is all
cache (about a second)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import yaml

from bot.emulator import Emulator, running_emulator
from jobs.records import DeploymentRecord, RecordStore
from testbed import paths
from testbed.rehearsal import BOB, CHANNEL, DANA, LOG, OPS, PEOPLE, Chat, free_port, until
from tests.e2e.conftest import ROOT, Bed, assert_served
from tests.e2e.test_workers import assert_nothing_left
from tests.metrics_text import value

pytestmark = pytest.mark.e2e

BUILDER = f"unix://{paths.builder_socket()}"
IMAGE = "greenlight:e2e-ship"
DASHBOARD_IMAGE = "greenlight-dashboard:e2e-ship"
REDIS_IMAGE = "greenlight/redis:bookworm"
# Where this machine's pip meets a TLS-intercepting proxy, its CA (Debian's place for
# local CAs); empty elsewhere.
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
CANARY = "123456:canary-token-that-must-never-reach-an-image"
UID = 10001  # the image's user


def docker(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=os.environ | {"DOCKER_HOST": BUILDER} | env,
    )
    assert done.returncode == 0, f"docker {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@dataclass
class Built:
    seconds: float
    size: int


def build(*args: str) -> None:
    cas = "".join(p.read_text() for p in sorted(LOCAL_CAS.glob("*.crt")))
    docker(
        "build",
        "--network",
        "host",
        f"--build-arg=PYTHON_IMAGE={paths.BASE_IMAGE}",
        f"--build-arg=BUILD_CA_CERTS={cas}",
        *args,
    )


def build_images() -> Built:
    """The Greenlight image (and the dashboard's, and the bed's Redis), built from the
    checkout as it is: its `.testbed/` (with the SSH client key) and a planted `.env`
    are in the build context's directory, and .dockerignore must keep them out."""
    planted = ROOT / ".env"
    plant = not planted.exists()
    if plant:
        planted.write_text(f"GREENLIGHT_BOT_TOKEN={CANARY}\n")
    try:
        started = time.monotonic()
        build("-t", IMAGE, ".")
        seconds = time.monotonic() - started
        build("--target", "dashboard", "-t", DASHBOARD_IMAGE, ".")
    finally:
        if plant:
            planted.unlink()
    redis_file = (ROOT / "testbed/redis.Dockerfile").read_text()
    subprocess.run(
        ["docker", "build", "--network", "host", "-t", REDIS_IMAGE, "-"],
        input=redis_file,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env=os.environ | {"DOCKER_HOST": BUILDER},
    )
    size = int(docker("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
    return Built(seconds, size)


@pytest.fixture(scope="session")
def image() -> Iterator[Built]:
    yield build_images()


def run_in(image: str, script: str, user: str = "") -> subprocess.CompletedProcess[str]:
    """`script` in a container of `image`, as its own user (or `user`: root sees all)."""
    who = ["--user", user] if user else []
    return docker("run", "--rm", *who, "--entrypoint", "sh", image, "-c", script)


def test_the_image_runs_greenlight_as_a_non_root_user_with_nothing_secret_inside(
    image: Built,
) -> None:
    print(f"\ngreenlight image: {image.size / 1e6:.0f} MB, built in {image.seconds:.1f} s")
    helped = docker("run", "--rm", IMAGE, "--help").stdout
    assert helped.startswith("usage: greenlight")
    assert "healthcheck" in helped and "worker" in helped
    config = json.loads(docker("image", "inspect", IMAGE, "--format", "{{json .Config}}").stdout)
    assert config["User"] == "greenlight"
    assert config["Entrypoint"] == ["greenlight"] and config["Cmd"] == ["bot"]
    assert config["Healthcheck"]["Test"] == ["CMD", "greenlight", "healthcheck"]
    assert not any(
        word in item for item in config["Env"] for word in ("TOKEN", "PASSWORD", "SECRET")
    )
    assert run_in(IMAGE, "id -u").stdout.strip() == str(UID)
    # Nothing of the checkout but the packages: no .testbed/, .env, .git, .venv, keys.
    found = run_in(
        IMAGE,
        "find / -xdev \\( -name .testbed -o -name .env -o -name .git -o -name .venv"
        " -o -name 'id_ed25519*' -o -name known_hosts -o -name tests \\) -print",
        user="0",
    ).stdout
    assert [line for line in found.splitlines() if "/site-packages/" not in line] == []
    key_line = (paths.client_key()).read_text().splitlines()[1]
    for secret in (key_line, CANARY):
        # -xdev: the image's own filesystem, not /proc (where grep's argv holds it).
        every_file = "find / -xdev -type f -print0 | xargs -0 grep -lF --"
        leaked = run_in(IMAGE, f"{every_file} '{secret}' || true", "0")
        assert leaked.stdout == ""
    # The runtime has no ssh client (asyncssh is the client), no pip and no compiler.
    assert run_in(IMAGE, "command -v ssh pip pip3 gcc cc || true").stdout == ""
    assert "No module named pip" in run_in(IMAGE, "python3 -m pip 2>&1 || true").stdout
    run_in(IMAGE, "python3 -c 'import aiogram, asyncssh, matplotlib, rq, bot.app, jobs.work'")


# The stack on the bed -------------------------------------------------------------------

STABILITY = {"duration": 12, "interval": 0.5}


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]
    redis: redis.Redis
    dashboard_port: int

    def compose(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        files = ["-f", str(ROOT / "compose.bot.yml"), "-f", str(ROOT / "compose.bot.testbed.yml")]
        done = subprocess.run(
            ["docker", "compose", *files, "--profile", "dashboard", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
            env=self.env,
        )
        assert done.returncode == 0, f"compose {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def memory(self) -> str:
        """Each container's resident memory, as `docker stats` reads it."""
        names = [c["Name"] for c in self.containers()]
        done = docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *names)
        prefix = self.env["GREENLIGHT_PROJECT"] + "-"
        rows = sorted(
            line.removeprefix(prefix).split(" / ")[0] for line in done.stdout.splitlines()
        )
        return ", ".join(rows)

    def containers(self) -> list[dict[str, Any]]:
        out = self.compose("ps", "--all", "--format", "json").stdout.strip()
        # compose 2.26 writes one JSON object per line
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def mounted_config(bed: Bed, into: Path) -> dict[str, str]:
    """The spec, the key and known_hosts as an operator lays them out for compose: the
    spec names the key by its path in the container; the key belongs to the image's
    user (a 0600 key of root's is unreadable there)."""
    specs, keys = into / "specs", into / "keys"
    specs.mkdir()
    keys.mkdir()
    source = bed.spec(("h1",), stability=STABILITY, drain=0.5)
    doc = yaml.safe_load(source.read_text())
    for env in doc["environments"].values():
        env["ssh"] = {
            "key": "/etc/greenlight/ssh/id_ed25519",
            "known_hosts": "/etc/greenlight/ssh/known_hosts",
        }
    (specs / "greenlight.yml").write_text(yaml.safe_dump(doc))
    shutil.copy(paths.client_key(), keys / "id_ed25519")
    shutil.copy(paths.known_hosts(), keys / "known_hosts")
    os.chown(keys / "id_ed25519", UID, UID)
    os.chmod(keys / "id_ed25519", 0o600)
    for path in (specs, specs / "greenlight.yml", keys / "known_hosts"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return {
        "GREENLIGHT_SPECS": str(specs),
        "GREENLIGHT_SSH_KEY": str(keys / "id_ed25519"),
        "GREENLIGHT_KNOWN_HOSTS": str(keys / "known_hosts"),
    }


@contextlib.asynccontextmanager
async def stack_on_the_bed(bed: Bed, emulator: Emulator, tmp_path: Path) -> AsyncIterator[Stack]:
    """`compose up` with two workers; logs saved and everything removed at the end."""
    redis_port, http_port, dashboard_port = free_port(), free_port(), free_port()
    env_file = tmp_path / "bot.env"
    env_file.write_text(
        f"GREENLIGHT_BOT_TOKEN={emulator.token}\n"
        f"GREENLIGHT_TELEGRAM_API={emulator.url}\n"
        f"GREENLIGHT_OPS_CHAT={OPS['id']}\n"
        f"GREENLIGHT_LOG_CHAT={LOG['id']}\n"
        f"GREENLIGHT_CHANNEL={CHANNEL['id']}\n"
        f"GREENLIGHT_PEOPLE={json.dumps(PEOPLE)}\n"
    )
    settings = {k: v for k, v in os.environ.items() if not k.startswith(("GREENLIGHT_", "REDIS"))}
    settings |= {
        "DOCKER_HOST": BUILDER,
        "GREENLIGHT_PROJECT": f"glship{os.getpid()}",
        "GREENLIGHT_IMAGE": IMAGE,
        "GREENLIGHT_DASHBOARD_IMAGE": DASHBOARD_IMAGE,
        "REDIS_IMAGE": REDIS_IMAGE,
        "GREENLIGHT_ENV_FILE": str(env_file),
        "GREENLIGHT_REDIS_PORT": str(redis_port),
        "GREENLIGHT_HTTP_PORT": str(http_port),
        "GREENLIGHT_DASHBOARD_PORT": str(dashboard_port),
        **mounted_config(bed, tmp_path),
    }
    connection = redis.Redis.from_url(f"redis://127.0.0.1:{redis_port}/0")
    stack = Stack(tmp_path, settings, connection, dashboard_port)
    try:
        yield stack
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            logs = stack.compose("logs", "--no-color", "--timestamps", timeout=60).stdout
            (tmp_path / "compose.log").write_text(logs)
            print(f"compose logs: {tmp_path / 'compose.log'}")
        stack.compose("down", "--volumes", "--timeout", "5")
        connection.close()


async def deployment(stack: Stack, chat: Chat, version: str) -> tuple[str, dict[str, Any]]:
    """Dana asks for `version`, Bob approves: the request's id and its card."""
    before = len(await chat.messages(OPS))
    await chat.control("message", user=DANA, chat=OPS, text=f"/deploy {version}")

    async def card_posted() -> dict[str, Any] | None:
        # The card, not whatever else the bot says meanwhile (the last window's chart).
        later = (await chat.messages(OPS))[before:]
        labels = [[b["text"] for row in m["buttons"] for b in row] for m in later]
        cards = [m for m, on in zip(later, labels, strict=True) if any("Approve" in t for t in on)]
        return cards[0] if cards else None

    card = await until(card_posted, f"the card for {version}", 30)
    await chat.press(BOB, card, "Approve")

    async def requested() -> DeploymentRecord | None:
        found = RecordStore(stack.redis).recent("sample", "production", 1)
        return found[0] if found and found[0].version == version else None

    record = await until(requested, f"the request for {version}", 30)
    return record.id, card


async def in_phase(stack: Stack, deployment_id: str, phase: str) -> None:
    async def there() -> bool:
        record = RecordStore(stack.redis).load(deployment_id)
        return record is not None and (record.state, record.phase) == ("running", phase)

    await until(there, f"{deployment_id} in {phase}", 120)


async def ended(stack: Stack, chat: Chat, deployment_id: str, card: dict[str, Any]) -> str:
    """The request's final state, once the card (now the progress message) says it."""

    async def final() -> str | None:
        record = RecordStore(stack.redis).load(deployment_id)
        return record.state if record is not None and record.final else None

    state: str = await until(final, f"{deployment_id} to end", 180)
    words = {"live": "is live", "recovered": "was recovered"}[state]

    async def shown() -> bool:
        now = next(m for m in await chat.messages(OPS) if m["message_id"] == card["message_id"])
        return words in (now["text"] or "")

    await until(shown, f"the progress message to say {words}", 60)
    return state


async def test_the_stack_deploys_from_the_chat_and_a_worker_restart_ends_known_good(
    bed: Bed, image: Built, tmp_path: Path
) -> None:
    """Cold start to the first /status answer; v1.0.0, then v1.0.1 with `docker compose
    restart worker` in its stability window (warm: the phase ends, the chain goes on, it
    goes live); Roll back pressed; v1.1.0 with `restart -t 1` in its window (cold: the
    workers are killed, a sweeper hands it to recovery, production is put back). Under
    load from the first release on, with zero failed requests."""
    async with running_emulator() as emulator, aiohttp.ClientSession() as session:
        chat = Chat(emulator, session)
        for room in (OPS, LOG, CHANNEL):
            await chat.control("chat", **room)
        async with stack_on_the_bed(bed, emulator, tmp_path) as stack:
            started = time.monotonic()
            stack.compose("up", "--detach", "--no-build", "--scale", "worker=2")
            answer = await chat.say(DANA, "/status")
            cold = time.monotonic() - started
            print(f"\ncold start, `compose up` to the bot's answer to /status: {cold:.1f} s")
            assert "sample/production" in answer["text"]
            await chat.quiet(1.0)
            print(f"memory at idle: {stack.memory()}")

            first, card = await deployment(stack, chat, "v1.0.0")
            assert await ended(stack, chat, first, card) == "live"
            assert bed.live(bed.spec(("h1",))) == {"h1": "v1.0.0"}

            with bed.load("h1") as load:
                # Warm: the busy worker finishes the window, its successor job waits
                # for the restarted workers and the release goes live.
                second, card = await deployment(stack, chat, "v1.0.1")
                await in_phase(stack, second, "monitor")
                print(f"memory in a stability window: {stack.memory()}")
                begun = time.monotonic()
                await asyncio.to_thread(stack.compose, "restart", "worker")
                took = time.monotonic() - begun
                print(f"`compose restart worker` in the window returned after {took:.1f} s")
                assert await ended(stack, chat, second, card) == "live"
                record = RecordStore(stack.redis).load(second)
                assert record is not None and record.deployment is not None
                assert "finalize" in record.deployment.completed
                assert bed.live(bed.spec(("h1",))) == {"h1": "v1.0.1"}

                progress = next(
                    m for m in await chat.messages(OPS) if m["message_id"] == card["message_id"]
                )
                await chat.press(DANA, progress, "Roll back")

                async def rolled_back() -> bool:
                    found = RecordStore(stack.redis).recent("sample", "production", 1)
                    return bool(found) and found[0].kind == "rollback" and found[0].final

                await until(rolled_back, "the rollback", 60)
                assert RecordStore(stack.redis).recent("sample", "production", 1)[0].state == (
                    "live"
                )
                assert bed.live(bed.spec(("h1",))) == {"h1": "v1.0.0"}

                # Cold: killed a second after SIGTERM, the window's job dies with them;
                # a restarted worker's sweeper hands the deployment to recovery.
                third, card = await deployment(stack, chat, "v1.1.0")
                await in_phase(stack, third, "monitor")
                await asyncio.to_thread(stack.compose, "restart", "--timeout", "1", "worker")
                assert await ended(stack, chat, third, card) == "recovered"
                assert bed.live(bed.spec(("h1",))) == {"h1": "v1.0.0"}
            print(f"load through h1: {load.stop().describe()}")
            assert_served(load.stop())
            assert_nothing_left(stack.redis)

            # The chart of a window came from the bot's container (matplotlib there).
            files = [f for m in await chat.messages(OPS) for f in m["files"]]
            assert any(f["kind"] == "photo" for f in files), files

            async with session.get(
                f"http://127.0.0.1:{stack.dashboard_port}/0/data/queues.json"
            ) as reply:
                assert reply.status == 200
                assert "greenlight" in [q["name"] for q in (await reply.json())["queues"]]

            # The bot's /metrics, scraped as Prometheus would: its Telegram calls and
            # the event stream it followed.
            bot_metrics = f"http://127.0.0.1:{stack.env['GREENLIGHT_HTTP_PORT']}/metrics"
            async with session.get(bot_metrics) as reply:
                assert reply.status == 200
                scraped = await reply.text()
            assert (
                value(scraped, "greenlight_telegram_requests_total", method="editMessageText") > 0
            )
            assert value(scraped, "greenlight_bot_event_lag_seconds_count") > 0

            async def healthy() -> bool:
                states = [c.get("Health") for c in stack.containers()]
                return len(states) == 5 and all(s == "healthy" for s in states)

            await until(healthy, "every container healthy", 60)
