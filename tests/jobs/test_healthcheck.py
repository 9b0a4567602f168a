"""`greenlight healthcheck`, the image's HEALTHCHECK: the bot by its own /health, a
worker by its registration in Redis (this container's worker, no other), against a
real HTTP server and the private Redis."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Worker

from greenlight import healthcheck
from jobs.queue import WORKER_NAME_FILE


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        (b"/opt/venv/bin/python3\0/opt/venv/bin/greenlight\0worker\0", "worker"),
        (b"/sbin/docker-init\0--\0greenlight\0worker\0", "worker"),  # init: true
        (b"/opt/venv/bin/python3\0/opt/venv/bin/greenlight\0bot\0", "bot"),
        (b"", "bot"),
    ],
)
def test_the_role_is_the_main_process(tmp_path: Path, cmdline: bytes, role: str) -> None:
    (tmp_path / "cmdline").write_bytes(cmdline)
    assert healthcheck.main_role(tmp_path / "cmdline") == role


@pytest.fixture
def health_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """A stand-in for the bot's HTTP server; the test sets what /health answers."""
    answer = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer[0] if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"redis": false}')

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GREENLIGHT_HTTP_HOST", "0.0.0.0")  # noqa: S104 (asked on loopback)
    monkeypatch.setenv("GREENLIGHT_HTTP_PORT", str(server.server_address[1]))
    yield answer
    server.shutdown()


def test_the_bot_is_healthy_when_its_health_endpoint_says_so(health_server: list[int]) -> None:
    assert healthcheck.check("bot") == 0
    health_server[0] = 503
    assert healthcheck.bot_problem() == '/health answered 503: {"redis": false}'
    assert healthcheck.check("bot") == 1


def test_a_bot_that_does_not_listen_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLIGHT_HTTP_PORT", "1")
    assert (healthcheck.bot_problem() or "").startswith("no answer from http://127.0.0.1:1/")


def test_a_worker_is_healthy_while_redis_lists_it_alive(
    r: redis.Redis, redis_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server)
    monkeypatch.setenv(WORKER_NAME_FILE, str(tmp_path / "name"))
    assert healthcheck.worker_problem() == "the worker has not registered yet"
    (tmp_path / "name").write_text("greenlight@box:7-ab12")
    assert healthcheck.worker_problem() == "RQ lists no live worker greenlight@box:7-ab12"
    # Another replica on the same host, with the same pid, is not this one.
    Worker(["greenlight"], connection=r, name="greenlight@box:7-cd34").register_birth()
    assert healthcheck.worker_problem() is not None
    worker = Worker(["greenlight"], connection=r, name="greenlight@box:7-ab12")
    worker.register_birth()
    assert healthcheck.worker_problem() is None
    worker.register_death()
    assert healthcheck.worker_problem() is not None


def test_a_worker_without_redis_is_unhealthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv(WORKER_NAME_FILE, str(tmp_path / "name"))
    (tmp_path / "name").write_text("greenlight@box:7-ab12")
    assert (healthcheck.worker_problem() or "").startswith("Redis does not answer")
