"""`greenlight healthcheck [bot|worker]`: what the image's HEALTHCHECK runs.

The bot is healthy when its own `GET /health` answers 200. A worker is healthy when
Redis answers and lists this container's worker (the name it wrote to
GREENLIGHT_WORKER_NAME_FILE) as alive: RQ's parent process renews that registration
while it waits for a job and while its work horse runs one, so a long stability window
is not mistaken for a hang. No aiogram and no engine are imported, so a check every
30 s stays cheap.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path

ROLES = ("bot", "worker")


def main_role(cmdline: Path = Path("/proc/1/cmdline")) -> str:
    """The container's role, from its main process's command line (`greenlight worker`,
    or `docker-init -- greenlight worker` with `init: true`); the bot otherwise."""
    try:
        words = cmdline.read_bytes().split(b"\0")
    except OSError:
        return "bot"
    return "worker" if b"worker" in words else "bot"


def bot_problem(timeout: float = 3.0) -> str | None:
    host = os.environ.get("GREENLIGHT_HTTP_HOST") or "127.0.0.1"
    # A bot listening on every address is asked on loopback, where it also listens.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    port = int(os.environ.get("GREENLIGHT_HTTP_PORT") or 8090)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/health")
        answer = connection.getresponse()
        body = answer.read(500).decode(errors="replace").strip()
    except OSError as exc:
        return f"no answer from http://{host}:{port}/health: {exc}"
    finally:
        connection.close()
    return None if answer.status == 200 else f"/health answered {answer.status}: {body}"


def worker_problem(timeout: float = 3.0) -> str | None:
    import redis

    from jobs.queue import WORKER_NAME_FILE, connect

    where = os.environ.get(WORKER_NAME_FILE)
    if not where:
        return f"{WORKER_NAME_FILE} is not set: no way to know this container's worker"
    try:
        name = Path(where).read_text().strip()
    except OSError:
        return "the worker has not registered yet"
    try:
        connection = connect(timeout=timeout)
        key = f"rq:worker:{name}"
        # RQ marks a worker that stopped with `death` and lets its key expire soon after.
        alive = connection.exists(key) and not connection.hexists(key, "death")
    except redis.RedisError as exc:
        return f"Redis does not answer: {exc}"
    return None if alive else f"RQ lists no live worker {name}"


def check(role: str | None) -> int:
    """0 healthy; 1 with one line saying why (docker keeps it in the health log)."""
    role = role or main_role()
    problem = bot_problem() if role == "bot" else worker_problem()
    print(f"{role}: {problem or 'healthy'}")
    return 1 if problem else 0
