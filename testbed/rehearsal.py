"""`python -m testbed.rehearsal`: the rehearsal through the chat.

The real pieces, as a team runs them: the Bot API emulator stands in for Telegram,
`greenlight bot` and `greenlight worker` run as their own processes against the test
bed's Redis (a database of its own) and hosts. Two people play a conversation in the
ops chat: Dana deploys, Bob approves; v1.0.1 goes live, v1.0.3 is rolled back by the
stability window; `/status` ends it. The chats are printed as a person reads them (each
message as it finally reads, its buttons and how often it was edited), and every chart
the bot posted is saved under `.testbed/rehearsal/`.

Exit status 0 when the conversation ended as it should, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis

from bot.emulator import Emulator, running_emulator
from jobs.records import WORDS, RecordStore
from testbed import paths

REDIS_URL = f"redis://127.0.0.1:{paths.REDIS_PORT}/7"  # the rehearsal's own database
OPS = {"id": -1001000000001, "type": "supergroup", "title": "ops"}
LOG = {"id": -1001000000002, "type": "supergroup", "title": "ops-log"}
CHANNEL = {"id": -1001000000003, "type": "channel", "title": "releases"}
DANA = {"id": 1001, "first_name": "Dana", "username": "dana"}
BOB = {"id": 1002, "first_name": "Bob", "username": "bob"}
PEOPLE = {"1001": ["deployer"], "1002": ["deployer", "approver"]}
APP, ENV = paths.APP_NAME, "production"
DEADLINE = 180.0  # a deployment with its 10 s stability window takes well under a minute

Message = dict[str, Any]


def config() -> Path:
    """The bed's spec (GREENLIGHT_CONFIG may name another)."""
    return Path(os.environ.get("GREENLIGHT_CONFIG") or paths.state_dir() / "greenlight.yml")


def out_dir() -> Path:
    return paths.state_dir() / "rehearsal"


class Chat:
    """People writing and pressing through the emulator's control endpoints."""

    def __init__(self, emulator: Emulator, session: aiohttp.ClientSession) -> None:
        self.emulator = emulator
        self.session = session

    async def control(self, name: str, **body: object) -> Any:
        async with self.session.post(f"{self.emulator.control_url}/{name}", json=body) as reply:
            answer = await reply.json()
        if not answer["ok"]:
            raise RuntimeError(f"emulator refused {name}: {answer['description']}")
        return answer["result"]

    async def messages(self, chat: dict[str, Any]) -> list[Message]:
        return list((await self.control("transcript", chat_id=chat["id"]))["messages"])

    async def say(self, who: dict[str, Any], text: str) -> Message:
        """`who` writes `text` in the ops chat; the bot's first reply."""
        before = len(await self.messages(OPS))
        await self.control("message", user=who, chat=OPS, text=text)

        async def reply() -> Message | None:
            later = await self.messages(OPS)
            return next((m for m in later[before:] if m["from_bot"]), None)

        return await until(reply, f"the bot's reply to {text}", 30)

    async def press(self, who: dict[str, Any], message: Message, label: str) -> None:
        """`who` presses the button whose text contains `label` on `message`."""
        for row in message["buttons"]:
            for button in row:
                if label in button["text"]:
                    await self.control(
                        "press",
                        user=who,
                        chat_id=OPS["id"],
                        message_id=message["message_id"],
                        data=button["callback_data"],
                    )
                    return
        raise RuntimeError(f"no {label!r} button on: {message['text']}")

    async def quiet(self, seconds: float = 3.0) -> None:
        """Until no chat has changed for `seconds`: the bot has said what it had to."""
        last, since = "", time.monotonic()
        deadline = since + 60
        while time.monotonic() < deadline:
            now = json.dumps([await self.messages(c) for c in ROOMS.values()])
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= seconds:
                return
            await asyncio.sleep(0.25)

    async def save_files(self, into: Path) -> list[Path]:
        """Every photo and document the bot sent, downloaded as a client would."""
        saved = []
        for chat in ROOMS.values():
            for message in await self.messages(chat):
                for file in message["files"]:
                    url = f"{self.emulator.url}/bot{self.emulator.token}/getFile"
                    async with self.session.post(url, json={"file_id": file["file_id"]}) as r:
                        path = (await r.json())["result"]["file_path"]
                    url = f"{self.emulator.url}/file/bot{self.emulator.token}/{path}"
                    async with self.session.get(url) as r:
                        data = await r.read()
                    suffix = ".png" if file["kind"] == "photo" else ".txt"
                    name = file["name"] or f"{chat['title']}-{message['message_id']}{suffix}"
                    target = into / name
                    target.write_bytes(data)
                    saved.append(target)
        return saved


async def until(check: Callable[[], Awaitable[Any]], what: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Processes:
    """`greenlight worker` and `greenlight bot`, each in a session of its own (so each
    can be stopped or killed whole), logging to `<logs>/<role>.log`."""

    def __init__(self, emulator: Emulator, logs: Path, redis_url: str = REDIS_URL) -> None:
        self.logs = logs
        self.env = os.environ | {
            "REDIS_URL": redis_url,
            "GREENLIGHT_CONFIG": str(config()),
            "GREENLIGHT_BOT_TOKEN": emulator.token,
            "GREENLIGHT_TELEGRAM_API": emulator.url,
            "GREENLIGHT_OPS_CHAT": str(OPS["id"]),
            "GREENLIGHT_LOG_CHAT": str(LOG["id"]),
            "GREENLIGHT_CHANNEL": str(CHANNEL["id"]),
            "GREENLIGHT_PEOPLE": json.dumps(PEOPLE),
            # /health on a port of its own, so a bot already running here is no obstacle
            "GREENLIGHT_HTTP_HOST": "127.0.0.1",
            "GREENLIGHT_HTTP_PORT": str(free_port()),
        }
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, role: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{role}.log").open("ab") as log:
            self.running[role] = subprocess.Popen(
                [sys.executable, "-m", "greenlight", role],
                cwd=paths.REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.running[role]

    def stop(self, role: str, how: signal.Signals = signal.SIGTERM) -> None:
        process = self.running.pop(role)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, how)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def processes(emulator: Emulator, logs: Path, redis_url: str = REDIS_URL) -> Iterator[Processes]:
    """A worker and the bot for the length of the block; stopped (SIGTERM) at its end."""
    started = Processes(emulator, logs, redis_url)
    for role in ("worker", "bot"):
        (logs / f"{role}.log").unlink(missing_ok=True)
    try:
        started.start("worker")
        started.start("bot")
        yield started
    finally:
        for role in list(started.running):
            started.stop(role)


async def deploy(chat: Chat, records: RecordStore, version: str, quiet: bool = False) -> str:
    """Dana asks, Bob approves; the request's final state once the chat is quiet."""
    card = await chat.say(DANA, f"/deploy {version}")
    await chat.press(BOB, card, "Approve")
    if not quiet:
        print(f"  Dana: /deploy {version}\n  bot:  {card['text']}\n  Bob presses Approve")

    async def final() -> str | None:
        last = records.recent(APP, ENV, 1)
        done = last and last[0].version == version and last[0].final
        return last[0].state if done else None

    state: str = await until(final, f"{version} to finish", DEADLINE)

    async def shown() -> bool:
        """The card, now the progress message, says how it ended (edits are paced)."""
        now = next(m for m in await chat.messages(OPS) if m["message_id"] == card["message_id"])
        return WORDS[state] in (now["text"] or "")

    await until(shown, f"the progress message to say {version} {WORDS[state]}", 60)
    await chat.quiet()
    return state


def show(title: str, messages: list[Message]) -> None:
    print(f"\n--- {title} ---")
    for m in messages:
        who = "bot" if m["from_bot"] else (m["from"] or {}).get("first_name", "?")
        edits = f"  (edited {m['edits']}×)" if m["edits"] else ""
        print(f"[{who}]{edits}")
        for line in (m["text"] or "").splitlines():
            print(f"    {line}")
        for f in m["files"]:
            print(f"    📎 {f['kind']} {f['name'] or ''} ({f['size']} bytes)")
        for row in m["buttons"]:
            print("    " + "  ".join(f"[{b['text']}]" for b in row))


@dataclass
class Rehearsal:
    """How the conversation ended: each version's final state, every chat as it reads
    now, and the files the bot sent (saved under `out`)."""

    states: dict[str, str]
    chats: dict[str, list[Message]]
    files: list[Path]
    out: Path
    error: str = ""  # a step that never happened (a reply that never came...)

    def wrong(self) -> list[str]:
        wanted = {"v1.0.1": "live", "v1.0.3": "rolled_back"}
        return [self.error] * bool(self.error) + [
            f"{version}: {self.states.get(version)} (wanted {state})"
            for version, state in wanted.items()
            if self.states.get(version) != state
        ]


async def rehearse(narrate: bool = True) -> Rehearsal:
    """The conversation; the test bed's production must already have a live release."""
    out = out_dir()
    out.mkdir(parents=True, exist_ok=True)
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    records = RecordStore(connection)
    states = {}
    error = ""
    async with running_emulator() as emulator, aiohttp.ClientSession() as session:
        chat = Chat(emulator, session)
        for room in (OPS, LOG, CHANNEL):
            await chat.control("chat", **room)
        with processes(emulator, out):
            try:
                await conversation(chat, records, states, narrate)
            except RuntimeError as exc:
                error = str(exc)
        chats = {title: await chat.messages(room) for title, room in ROOMS.items()}
        files = await chat.save_files(out)
    return Rehearsal(states, chats, files, out, error)


async def conversation(
    chat: Chat, records: RecordStore, states: dict[str, str], narrate: bool
) -> None:
    await chat.say(DANA, "/help")  # the bot is up and polling
    if narrate:
        print("\n=== in the ops chat")
    for version in ("v1.0.1", "v1.0.3"):
        states[version] = await deploy(chat, records, version, quiet=not narrate)
    status = await chat.say(DANA, "/status")
    await chat.quiet()
    if narrate:
        print(f"  Dana: /status\n  bot:  {status['text'].splitlines()[0]}")


ROOMS = {"ops chat": OPS, "log chat": LOG, "channel": CHANNEL}


def main() -> int:
    done = asyncio.run(rehearse())
    for title, messages in done.chats.items():
        show(title, messages)
    print(f"\nfiles the bot sent, saved: {', '.join(str(p) for p in done.files) or 'none'}")
    print(f"bot and worker logs: {done.out}/bot.log, {done.out}/worker.log")
    if done.wrong():
        print(f"rehearsal: ended wrong: {'; '.join(done.wrong())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
